using System.Collections.Concurrent;
using KvCache.Contracts.Internal.V1;
using KvCache.Silo.Cluster.Membership;
using KvCache.Transport;

namespace KvCache.Silo.Cluster.Serving;

/// <summary>
/// One HTTP/2 channel per silo endpoint, shared by all calls to it (gateway to silo, and silo to silo for
/// migration); every call carries the cluster secret.
/// </summary>
public sealed class SiloConnections(string secret) : IDisposable
{
    private readonly ConcurrentDictionary<string, (GrpcChannel Channel, SiloGrpc.SiloClient Client)> _silos = new(StringComparer.Ordinal);

    public SiloGrpc.SiloClient Client(SiloAddress silo) =>
        _silos.GetOrAdd(silo.Endpoint, static endpoint =>
        {
            var channel = GrpcChannel.ForAddress(new Uri($"http://{endpoint}"));
            return (channel, new SiloGrpc.SiloClient(channel.CreateCallInvoker()));
        }).Client;

    public CallOptions Options(CancellationToken cancellationToken, DateTime? deadline = null) =>
        new(SiloProtocol.Headers(secret), deadline, cancellationToken);

    public void Dispose()
    {
        foreach (var (channel, _) in _silos.Values)
        {
            channel.Dispose();
        }
    }
}
