using System.Collections.Concurrent;
using System.Net;
using KvCache.Transport.Internal;

namespace KvCache.Transport;

/// <summary>
/// A long-lived connection pool to one gRPC server over HTTP/2 (h2c for http:// addresses). Create one per
/// server and share it: calls are multiplexed, and extra connections open when one hits its stream limit.
/// </summary>
public sealed class GrpcChannel : IDisposable
{
    private readonly ConcurrentDictionary<string, Uri> _methodUris = new(StringComparer.Ordinal);

    private GrpcChannel(Uri address, GrpcChannelOptions options)
    {
        Address = address;
        MaxReceiveMessageSize = options.MaxReceiveMessageSize;
        MaxSendMessageSize = options.MaxSendMessageSize;
        Invoker = options.HttpHandler is { } handler
            ? new HttpMessageInvoker(handler, disposeHandler: false)
            : new HttpMessageInvoker(CreateHandler(), disposeHandler: true);
    }

    public Uri Address { get; }

    internal int? MaxReceiveMessageSize { get; }

    internal int? MaxSendMessageSize { get; }

    internal HttpMessageInvoker Invoker { get; }

    public static GrpcChannel ForAddress(Uri address, GrpcChannelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!address.IsAbsoluteUri || (address.Scheme != Uri.UriSchemeHttp && address.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"Address '{address}' must be an absolute http:// or https:// URI.", nameof(address));
        }

        options ??= new GrpcChannelOptions();
        if (options.MaxReceiveMessageSize is <= 0 || options.MaxSendMessageSize is <= 0)
        {
            throw new ArgumentException("Message size limits must be positive.", nameof(options));
        }

        return new GrpcChannel(address, options);
    }

    public CallInvoker CreateCallInvoker() => new HttpCallInvoker(this);

    public void Dispose() => Invoker.Dispose();

    internal Uri GetMethodUri(string fullName) =>
        _methodUris.GetOrAdd(fullName, static (name, address) => new Uri(address, name), Address);

    private static SocketsHttpHandler CreateHandler() => new()
    {
        // A proxy would not speak h2c; gRPC traffic here is in-cluster.
        UseProxy = false,
        EnableMultipleHttp2Connections = true,
        AutomaticDecompression = DecompressionMethods.None,
        PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        KeepAlivePingDelay = TimeSpan.FromSeconds(60),
        KeepAlivePingTimeout = TimeSpan.FromSeconds(30),
        KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
    };
}
