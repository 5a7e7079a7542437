using System.Collections.Concurrent;
using KvCache.Contracts.Internal.V1;
using KvCache.Silo.Cluster.Membership;
using KvCache.Transport;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Cluster.Serving.Internal;

/// <summary>One HTTP/2 channel per other silo, for silo-to-silo calls (migration); every call carries the cluster secret.</summary>
internal sealed class SiloClients(IOptions<ClusterOptions> options) : IDisposable
{
    private readonly ConcurrentDictionary<string, (GrpcChannel Channel, SiloGrpc.SiloClient Client)> _silos = new(StringComparer.Ordinal);
    private readonly string _secret = options.Value.Secret;

    public SiloGrpc.SiloClient Client(SiloAddress silo) =>
        _silos.GetOrAdd(silo.Endpoint, static endpoint =>
        {
            var channel = GrpcChannel.ForAddress(new Uri($"http://{endpoint}"));
            return (channel, new SiloGrpc.SiloClient(channel.CreateCallInvoker()));
        }).Client;

    public CallOptions Options(CancellationToken cancellationToken, DateTime? deadline = null) =>
        new(SiloProtocol.Headers(_secret), deadline, cancellationToken);

    public void Dispose()
    {
        foreach (var (channel, _) in _silos.Values)
        {
            channel.Dispose();
        }
    }
}
