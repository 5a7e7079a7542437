using KvCache.Gateway.Quotas;
using KvCache.Silo.Hosting;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using Microsoft.Extensions.Options;

namespace KvCache.Gateway.OpenAI;

/// <summary>What one turn did to its session.</summary>
/// <param name="HeldBefore">Tokens the session held before the turn (the cached part of its input).</param>
/// <param name="InputEnd">Position after the new input was appended.</param>
/// <param name="End">Position after the reply: where the next turn continues.</param>
internal sealed record TurnResult(long HeldBefore, long InputEnd, long End, string Text, int Generated, FinishReason Finish)
{
    public bool HitLimit => Finish is FinishReason.MaxTokens or FinishReason.MaxPosition;
}

/// <summary>
/// One conversational turn on a session, charged to its tenant exactly as the gRPC surface charges Append and
/// Decode (<see cref="TenantQuotas"/>'s public calls in the same order): append the new messages, then generate.
/// </summary>
internal sealed class OpenAITurns(ISessionService sessions, TenantQuotas quotas, ISessionStore store, IOptions<SiloOptions> silo)
{
    public async Task<SessionInfo> CreateSessionAsync(string tenant, string? model, string? codec, string? sessionId, CancellationToken cancellationToken) =>
        await quotas.CreateSessionAsync(tenant, () => sessions.CreateAsync(tenant, model, codec, sessionId, cancellationToken), cancellationToken);

    /// <summary>The session's facts, or null when it does not exist (any more).</summary>
    public async Task<SessionInfo?> FindSessionAsync(SessionKey key, CancellationToken cancellationToken)
    {
        try
        {
            return await sessions.GetAsync(key, cancellationToken);
        }
        catch (SessionException e) when (e.Code == SessionErrorCode.NotFound)
        {
            return null;
        }
    }

    public async Task DeleteSessionAsync(SessionKey key, CancellationToken cancellationToken)
    {
        try
        {
            await sessions.DeleteAsync(key, cancellationToken);
        }
        catch (SessionException e) when (e.Code == SessionErrorCode.NotFound)
        {
        }

        quotas.Deleted(key);
    }

    /// <summary>
    /// A new session holding exactly <paramref name="source"/>'s first <paramref name="position"/> tokens, read from
    /// its token log (append-only, so later turns of the source never change them) and prefilled again in appends of
    /// at most <c>Silo:MaxAppendTokens</c>, each charged to the tenant's cache quota first.
    /// </summary>
    public async Task<SessionInfo> ForkAsync(SessionKey source, long position, string model, string codec, CancellationToken cancellationToken)
    {
        var fork = await CreateSessionAsync(source.Tenant, model, codec, null, cancellationToken);
        var key = new SessionKey(source.Tenant, fork.Id);
        try
        {
            var buffer = new int[silo.Value.MaxAppendTokens];
            for (var start = 0L; start < position;)
            {
                var wanted = (int)Math.Min(buffer.Length, position - start);
                var read = await store.ReadTokensAsync(source, start, buffer.AsMemory(0, wanted), cancellationToken);
                if (read != wanted)
                {
                    throw new SessionException(SessionErrorCode.NotFound, "The conversation's session no longer holds that response.");
                }

                await quotas.CheckCacheAsync(key, read, cancellationToken);
                await sessions.AppendAsync(key, buffer[..read], 0, cancellationToken);
                await quotas.SettleAsync(key, cancellationToken);
                start += read;
            }
        }
        catch
        {
            await DeleteSessionAsync(key, CancellationToken.None);
            throw;
        }

        return fork with { Position = position };
    }

    /// <param name="onText">Called with each non-empty piece of the reply's text as it is generated.</param>
    public async Task<TurnResult> RunAsync(
        SessionKey key, ChatTurn[] messages, DecodeRequestOptions options, Func<string, Task>? onText, CancellationToken cancellationToken)
    {
        // Text and messages are tokenized by the session's silo: the quota sees their tokens once they are appended.
        await quotas.CheckCacheAsync(key, 1, cancellationToken);
        var appended = await sessions.AppendAsync(key, new AppendInput([], null, messages, 0, false), cancellationToken);
        await quotas.SettleAsync(key, cancellationToken);

        var text = new System.Text.StringBuilder();
        var end = appended.Position;
        var generated = 0;
        var finish = FinishReason.None;
        using var slot = quotas.EnterDecode(key.Tenant);
        await quotas.CheckCacheAsync(key, 1, cancellationToken);
        await using var tokens = sessions.DecodeAsync(key, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            // Charged before each token is generated, as on gRPC.
            quotas.TakeDecodeToken(key.Tenant);
            if (!await tokens.MoveNextAsync())
            {
                quotas.ReturnDecodeToken(key.Tenant);
                break;
            }

            var token = tokens.Current;
            end = token.Position + 1;
            generated++;
            quotas.Advanced(key, end);
            if (token.Text.Length > 0)
            {
                text.Append(token.Text);
                if (onText is not null)
                {
                    await onText(token.Text);
                }
            }

            if (token.Finish != FinishReason.None)
            {
                finish = token.Finish;
                break;
            }

            await quotas.CheckCacheAsync(key, 1, cancellationToken);
        }

        // As on gRPC: the tokens were charged at an estimate; the session's real bytes settle it.
        await quotas.SettleAsync(key, cancellationToken);
        return new TurnResult(appended.Position - appended.AppendedTokens, appended.Position, end, text.ToString(), generated, finish);
    }
}
