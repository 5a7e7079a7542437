using Grpc.Core;
using Grpc.Core.Interceptors;
using KvCache.Gateway.Services.Internal;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions;

namespace KvCache.Gateway.Services;

/// <summary>
/// Around every call of the session and operator services: carries the caller's placement hint
/// (<see cref="PlacementHint.Header"/>) into Orleans' request context, and turns session errors into their gRPC
/// status codes (a silo's or the spill store's outage is UNAVAILABLE, logged).
/// </summary>
public sealed class SessionErrorInterceptor(ILogger<SessionErrorInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        using var hint = PlacementScope.Enter(context);
        try
        {
            return await continuation(request, context);
        }
        catch (SessionException ex)
        {
            throw ToRpc(ex, context);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        using var hint = PlacementScope.Enter(context);
        try
        {
            await continuation(request, responseStream, context);
        }
        catch (SessionException ex)
        {
            throw ToRpc(ex, context);
        }
    }

    private RpcException ToRpc(SessionException ex, ServerCallContext context)
    {
        var code = ProtoMapping.ToStatusCode(ex.Code);
        if (code == StatusCode.Unavailable)
        {
            GatewayLog.SessionUnavailable(logger, ex, context.Method, ex.Message);
        }

        return new RpcException(new Status(code, ex.Message));
    }

    /// <summary>The hint in Orleans' request context for the duration of one call.</summary>
    private readonly struct PlacementScope : IDisposable
    {
        private readonly bool _set;

        private PlacementScope(bool set) => _set = set;

        public static PlacementScope Enter(ServerCallContext context)
        {
            var hint = context.RequestHeaders.GetValue(PlacementHint.Header);
            if (string.IsNullOrEmpty(hint))
            {
                return default;
            }

            RequestContext.Set(PlacementHint.RequestContextKey, hint);
            return new PlacementScope(set: true);
        }

        public void Dispose()
        {
            if (_set)
            {
                RequestContext.Remove(PlacementHint.RequestContextKey);
            }
        }
    }
}

internal static partial class GatewayLog
{
    [LoggerMessage(400, LogLevel.Warning, "{Method} failed as UNAVAILABLE: {Reason}")]
    public static partial void SessionUnavailable(ILogger logger, Exception exception, string method, string reason);

    [LoggerMessage(401, LogLevel.Warning, "No API keys are configured: every caller is tenant '{Tenant}'. Configure Auth:ApiKeys for production.")]
    public static partial void DevMode(ILogger logger, string tenant);
}
