namespace KvCache.Transport;

/// <summary>
/// A server-streaming call in progress (mirrors Grpc.Core.AsyncServerStreamingCall, including its
/// delegate-based constructor so tests can fake one). Disposing it before the end cancels the call.
/// </summary>
public sealed class AsyncServerStreamingCall<TResponse>(
    IAsyncStreamReader<TResponse> responseStream,
    Task<Metadata> responseHeadersAsync,
    Func<Status> getStatusFunc,
    Func<Metadata> getTrailersFunc,
    Action disposeAction) : IDisposable
{
    public IAsyncStreamReader<TResponse> ResponseStream { get; } = responseStream;

    /// <summary>The response headers; faults with <see cref="RpcException"/> if the call fails before them.</summary>
    public Task<Metadata> ResponseHeadersAsync { get; } = responseHeadersAsync;

    /// <summary>The final status; throws <see cref="InvalidOperationException"/> until the call has finished.</summary>
    public Status GetStatus() => getStatusFunc();

    /// <summary>The response trailers; throws <see cref="InvalidOperationException"/> until the call has finished.</summary>
    public Metadata GetTrailers() => getTrailersFunc();

    public void Dispose() => disposeAction();
}
