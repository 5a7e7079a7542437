using Google.Protobuf;

namespace KvCache.Transport;

/// <summary>Starts calls; generated clients are written against it (mirrors Grpc.Core.CallInvoker).</summary>
public abstract class CallInvoker
{
    /// <summary>Sends one request and returns the response; failures throw <see cref="RpcException"/>.</summary>
    public abstract Task<TResponse> UnaryAsync<TRequest, TResponse>(Method<TRequest, TResponse> method, TRequest request, CallOptions options)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>;

    /// <summary>Sends one request and streams the responses; dispose the call to cancel it early.</summary>
    public abstract AsyncServerStreamingCall<TResponse> ServerStreaming<TRequest, TResponse>(Method<TRequest, TResponse> method, TRequest request, CallOptions options)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>;
}
