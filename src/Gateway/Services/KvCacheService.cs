using Grpc.Core;
using KvCache.Contracts.V1;
using KvCache.Gateway.Auth;
using KvCache.Gateway.Quotas;
using KvCache.Gateway.Services.Internal;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Gateway.Services;

/// <summary>
/// The public <c>kvcache.v1.KvCache</c> service: authenticates the tenant, applies its quotas, and hands the call
/// to the session grain through <see cref="ISessionService"/>. Session errors become status codes in
/// <see cref="SessionErrorInterceptor"/>.
/// </summary>
public sealed class KvCacheService(ISessionService sessions, TenantAuthenticator auth, TenantQuotas quotas) : V1.KvCache.KvCacheBase
{
    private const int DefaultTopLogprobs = 5;

    /// <summary>Most next-token log-probabilities an Append returns (exact perplexity needs prompt_logprobs instead).</summary>
    private const int MaxTopLogprobs = 256;

    public override async Task<V1.Session> CreateSession(CreateSessionRequest request, ServerCallContext context)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        var info = await quotas.CreateSessionAsync(
            tenant,
            () => sessions.CreateAsync(tenant, request.Model, request.Codec, request.SessionId, context.CancellationToken),
            context.CancellationToken);
        return ProtoMapping.ToProto(info);
    }

    public override async Task<AppendResponse> Append(AppendRequest request, ServerCallContext context)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        if (request.TopLogprobs is < 0 or > MaxTopLogprobs)
        {
            throw InvalidArgument($"top_logprobs must be in [0, {MaxTopLogprobs}].");
        }

        var key = Key(tenant, request.SessionId);
        var input = ProtoMapping.ToInput(request, request.TopLogprobs == 0 ? DefaultTopLogprobs : request.TopLogprobs);
        // Text and messages are tokenized by the session's silo: the quota sees their tokens once they are appended.
        await quotas.CheckCacheAsync(key, Math.Max(1, input.TokenIds.Length), context.CancellationToken);
        var result = await sessions.AppendAsync(key, input, context.CancellationToken);
        await quotas.SettleAsync(key, context.CancellationToken);
        return ProtoMapping.ToProto(result);
    }

    public override async Task Decode(DecodeRequest request, IServerStreamWriter<DecodeEvent> responseStream, ServerCallContext context)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        var options = ProtoMapping.ToOptions(request);
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
            await responseStream.WriteAsync(ProtoMapping.ToProto(token), context.CancellationToken);
            if (token.Finish != Silo.Sessions.FinishReason.None)
            {
                break;
            }

            await quotas.CheckCacheAsync(key, 1, context.CancellationToken);
        }

        await quotas.SettleAsync(key, context.CancellationToken);
    }

    public override async Task<V1.Session> GetSession(GetSessionRequest request, ServerCallContext context)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        return ProtoMapping.ToProto(await sessions.GetAsync(Key(tenant, request.SessionId), context.CancellationToken));
    }

    public override async Task<V1.Session> SpillSession(SpillSessionRequest request, ServerCallContext context)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        return ProtoMapping.ToProto(await sessions.SpillAsync(Key(tenant, request.SessionId), context.CancellationToken));
    }

    public override async Task<DeleteSessionResponse> DeleteSession(DeleteSessionRequest request, ServerCallContext context)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        var key = Key(tenant, request.SessionId);
        await sessions.DeleteAsync(key, context.CancellationToken);
        quotas.Deleted(key);
        return new DeleteSessionResponse();
    }

    public override async Task<ListSessionsResponse> ListSessions(ListSessionsRequest request, ServerCallContext context)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        var page = await sessions.ListAsync(tenant, request.PageSize, request.PageToken, context.CancellationToken);
        var response = new ListSessionsResponse { NextPageToken = page.NextPageToken ?? "" };
        response.Sessions.AddRange(page.Sessions.Select(ProtoMapping.ToProto));
        return response;
    }

    public override async Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var tenant = auth.Authenticate(context.RequestHeaders);
        var response = new ListModelsResponse();
        response.Models.AddRange((await sessions.ListModelsAsync(tenant, context.CancellationToken)).Select(ProtoMapping.ToProto));
        return response;
    }

    private static SessionKey Key(string tenant, string sessionId) =>
        string.IsNullOrEmpty(sessionId) ? throw InvalidArgument("session_id is required.") : new SessionKey(tenant, sessionId);

    private static RpcException InvalidArgument(string message) => new(new Status(StatusCode.InvalidArgument, message));
}
