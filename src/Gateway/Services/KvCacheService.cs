using KvCache.Contracts.V1;
using KvCache.Gateway.Auth;
using KvCache.Gateway.Quotas;
using KvCache.Gateway.Routing;
using KvCache.Silo.Cluster.Serving;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Transport;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Gateway.Services;

/// <summary>
/// The public <c>kvcache.v1.KvCache</c> service: authenticates the tenant, checks the request's shape, and
/// forwards it to the silo that owns the session.
/// </summary>
public sealed class KvCacheService(ISessionService sessions, TenantAuthenticator auth, TenantQuotas quotas, ILogger<KvCacheService> logger)
{
    private const int DefaultTopLogprobs = 5;
    private const int MaxTopLogprobs = 20;

    public void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGrpcUnary(KvCacheGrpc.CreateSessionMethod, CreateSession);
        endpoints.MapGrpcUnary(KvCacheGrpc.AppendMethod, Append);
        endpoints.MapGrpcServerStreaming(KvCacheGrpc.DecodeMethod, Decode);
        endpoints.MapGrpcUnary(KvCacheGrpc.GetSessionMethod, GetSession);
        endpoints.MapGrpcUnary(KvCacheGrpc.SpillSessionMethod, SpillSession);
        endpoints.MapGrpcUnary(KvCacheGrpc.DeleteSessionMethod, DeleteSession);
        endpoints.MapGrpcUnary(KvCacheGrpc.ListSessionsMethod, ListSessions);
        endpoints.MapGrpcUnary(KvCacheGrpc.ListModelsMethod, ListModels);
    }

    public Task<V1.Session> CreateSession(CreateSessionRequest request, ServerCallContext context) =>
        Call(context, async tenant => SiloProtoMapping.ToProto(await quotas.CreateSessionAsync(
            tenant,
            () => sessions.CreateAsync(tenant, request.Model, request.Codec, request.SessionId, context.CancellationToken),
            context.CancellationToken)));

    public Task<AppendResponse> Append(AppendRequest request, ServerCallContext context) =>
        Call(context, async tenant =>
        {
            if (request.TopLogprobs is < 0 or > MaxTopLogprobs)
            {
                throw InvalidArgument($"top_logprobs must be in [0, {MaxTopLogprobs}].");
            }

            var key = Key(tenant, request.SessionId);
            var tokens = request.TokenIds.ToArray();
            await quotas.CheckCacheAsync(key, tokens.Length, context.CancellationToken);
            var result = await sessions.AppendAsync(
                key,
                tokens,
                request.TopLogprobs == 0 ? DefaultTopLogprobs : request.TopLogprobs,
                context.CancellationToken);
            quotas.Advanced(key, result.Position);
            return SiloProtoMapping.ToProto(result);
        });

    public async Task Decode(DecodeRequest request, IServerStreamWriter<DecodeEvent> responseStream, ServerCallContext context)
    {
        await Call(context, async tenant =>
        {
            var options = SiloProtoMapping.ToOptions(request);
            var key = Key(tenant, request.SessionId);
            using var slot = quotas.EnterDecode(tenant);
            await quotas.CheckCacheAsync(key, 1, context.CancellationToken);
            var events = sessions.DecodeAsync(key, options, context.CancellationToken);
            await using var enumerator = events.GetAsyncEnumerator(context.CancellationToken);
            while (true)
            {
                // Each token is charged before it is generated; a quota hit ends the stream after the durable
                // tokens already sent, and the same request_id resumes it.
                quotas.TakeDecodeToken(tenant);
                if (!await enumerator.MoveNextAsync())
                {
                    quotas.ReturnDecodeToken(tenant);
                    break;
                }

                var token = enumerator.Current;
                quotas.Advanced(key, token.Position + 1);
                await responseStream.WriteAsync(SiloProtoMapping.ToProto(token), context.CancellationToken);
                if (token.Finish != Silo.Sessions.FinishReason.None)
                {
                    break;
                }

                await quotas.CheckCacheAsync(key, 1, context.CancellationToken);
            }

            return true;
        });
    }

    public Task<V1.Session> GetSession(GetSessionRequest request, ServerCallContext context) =>
        Call(context, async tenant => SiloProtoMapping.ToProto(await sessions.GetAsync(Key(tenant, request.SessionId), context.CancellationToken)));

    public Task<V1.Session> SpillSession(SpillSessionRequest request, ServerCallContext context) =>
        Call(context, async tenant => SiloProtoMapping.ToProto(await sessions.SpillAsync(Key(tenant, request.SessionId), context.CancellationToken)));

    public Task<DeleteSessionResponse> DeleteSession(DeleteSessionRequest request, ServerCallContext context) =>
        Call(context, async tenant =>
        {
            var key = Key(tenant, request.SessionId);
            await sessions.DeleteAsync(key, context.CancellationToken);
            quotas.Deleted(key);
            return new DeleteSessionResponse();
        });

    public Task<ListSessionsResponse> ListSessions(ListSessionsRequest request, ServerCallContext context) =>
        Call(context, async tenant =>
        {
            var page = await sessions.ListAsync(tenant, request.PageSize, request.PageToken, context.CancellationToken);
            var response = new ListSessionsResponse { NextPageToken = page.NextPageToken ?? "" };
            response.Sessions.AddRange(page.Sessions.Select(SiloProtoMapping.ToProto));
            return response;
        });

    public Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context) =>
        Call(context, tenant =>
        {
            var response = new ListModelsResponse();
            response.Models.AddRange(sessions.ListModels().Select(SiloProtoMapping.ToProto));
            return Task.FromResult(response);
        });

    /// <summary>Authenticates, runs the call, and turns session errors into gRPC status codes.</summary>
    private async Task<T> Call<T>(ServerCallContext context, Func<string, Task<T>> call)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        PlacementHint.Current = context.RequestHeaders.GetValue(PlacementHint.Header);
        try
        {
            return await call(tenant);
        }
        catch (SessionException ex)
        {
            // A silo's "not the owner" is routing's business; one that gets this far is a retryable UNAVAILABLE.
            var code = ex.Code == SessionErrorCode.NotOwner ? StatusCode.Unavailable : SiloProtoMapping.ToStatusCode(ex.Code);
            if (code == StatusCode.Unavailable)
            {
                GatewayLog.SessionUnavailable(logger, ex, tenant, ex.Message);
            }

            throw new RpcException(new Status(code, ex.Message));
        }
    }

    private static SessionKey Key(string tenant, string sessionId) =>
        string.IsNullOrEmpty(sessionId) ? throw InvalidArgument("session_id is required.") : new SessionKey(tenant, sessionId);

    private static RpcException InvalidArgument(string message) => new(new Status(StatusCode.InvalidArgument, message));
}

internal static partial class GatewayLog
{
    [LoggerMessage(400, LogLevel.Warning, "A call of tenant {Tenant} failed as UNAVAILABLE: {Reason}")]
    public static partial void SessionUnavailable(ILogger logger, Exception exception, string tenant, string reason);

    [LoggerMessage(401, LogLevel.Warning, "No API keys are configured: every caller is tenant '{Tenant}'. Configure Auth:ApiKeys for production.")]
    public static partial void DevMode(ILogger logger, string tenant);
}
