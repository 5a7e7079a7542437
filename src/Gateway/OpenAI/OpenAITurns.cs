using KvCache.Gateway.Quotas;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;

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
internal sealed class OpenAITurns(ISessionService sessions, TenantQuotas quotas)
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
    /// A new session holding exactly <paramref name="source"/>'s first <paramref name="position"/> tokens (its token log is
    /// append-only, so later turns never change them), copied in the spill store with the source's snapshot when that
    /// covers them: nothing is recomputed but the log past the snapshot, when the fork is first loaded. Admitted and
    /// charged as a new session of that many tokens.
    /// </summary>
    public async Task<SessionInfo> ForkAsync(SessionKey source, long position, CancellationToken cancellationToken)
    {
        // The fork has the source's model and codec: the source's bytes per token price it before it is made.
        await quotas.CheckCacheAsync(source, position, cancellationToken);
        return await quotas.CreateSessionAsync(source.Tenant, () => sessions.ForkAsync(source, position, cancellationToken), cancellationToken);
    }

    /// <param name="expectedPosition">Append only at this position (else <see cref="SessionErrorCode.Aborted"/>, nothing done).</param>
    /// <param name="onText">Called with each non-empty piece of the reply's text as it is generated.</param>
    public async Task<TurnResult> RunAsync(
        SessionKey key, ChatTurn[] messages, DecodeRequestOptions options, long? expectedPosition, Func<string, Task>? onText, CancellationToken cancellationToken)
    {
        // Text and messages are tokenized by the session's silo: the quota sees their tokens once they are appended.
        await quotas.CheckCacheAsync(key, 1, cancellationToken);
        var appended = await sessions.AppendAsync(key, new AppendInput([], null, messages, 0, false, ExpectedPosition: expectedPosition), cancellationToken);
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
