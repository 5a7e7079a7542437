using Google.Protobuf;

namespace KvCache.Transport.Internal;

internal sealed class HttpCallInvoker(GrpcChannel channel) : CallInvoker
{
    public override Task<TResponse> UnaryAsync<TRequest, TResponse>(Method<TRequest, TResponse> method, TRequest request, CallOptions options)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(request);
        return new GrpcCall<TRequest, TResponse>(channel, method, options).UnaryAsync(request);
    }

    public override AsyncServerStreamingCall<TResponse> ServerStreaming<TRequest, TResponse>(Method<TRequest, TResponse> method, TRequest request, CallOptions options)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(request);
        var call = new GrpcCall<TRequest, TResponse>(channel, method, options);
        var headers = call.StartStreaming(request);
        return new AsyncServerStreamingCall<TResponse>(call, headers, call.GetStatus, call.GetTrailers, call.Dispose);
    }
}
