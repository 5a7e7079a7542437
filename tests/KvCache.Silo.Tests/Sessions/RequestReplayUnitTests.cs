using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Silo.Tests.Infrastructure;
using Xunit;

namespace KvCache.Silo.Tests.Sessions;

/// <summary>
/// Request ids on an in-process silo: a repeated Append applies once and answers as the first time; a repeated
/// Decode answers with exactly what that request produced, never another request's tokens; a request id reused with
/// other parameters is refused.
/// </summary>
public sealed class RequestReplayUnitTests : IAsyncLifetime
{
    private const string Tenant = "acme";
    private static readonly int[] Prompt = Enumerable.Range(0, 40).Select(i => (i * 41 + 5) % 500).ToArray();
    private static readonly SamplingOptions Greedy = new(0, 0, 0, 0);

    private SessionTestCluster _cluster = null!;

    public async Task InitializeAsync() => _cluster = await SessionTestCluster.StartAsync();

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    private ISessionService Sessions => _cluster.Sessions;

    [Fact]
    public async Task A_repeated_append_applies_once_and_returns_the_first_result()
    {
        var key = await _cluster.CreateAsync(Tenant, "appended");

        var first = await Sessions.AppendAsync(key, AppendInput.Tokens(Prompt, 4, "prompt-1"), default);
        var again = await Sessions.AppendAsync(key, AppendInput.Tokens(Prompt, 4, "prompt-1"), default);

        Assert.False(first.Replayed);
        Assert.True(again.Replayed);
        Assert.Equal((Prompt.Length, Prompt.Length), (first.Position, first.AppendedTokens));
        Assert.Equal((first.Position, first.AppendedTokens), (again.Position, again.AppendedTokens));
        Assert.Equal(first.TopLogprobs, again.TopLogprobs);
        Assert.Equal(4, again.TopLogprobs.Length);
        Assert.Equal(Prompt.Length, await _cluster.Store.GetTokenCountAsync(key));

        // The same id for other tokens, or other top_logprobs, names another request.
        await AssertCodeAsync(SessionErrorCode.InvalidArgument, () => Sessions.AppendAsync(key, AppendInput.Tokens([1, 2], 4, "prompt-1"), default));
        await AssertCodeAsync(SessionErrorCode.InvalidArgument, () => Sessions.AppendAsync(key, AppendInput.Tokens(Prompt, 5, "prompt-1"), default));
        Assert.Equal(Prompt.Length, (await Sessions.GetAsync(key, default)).Position);

        // prompt_logprobs asks for another result: another request. With its own id it replays its scores too.
        await AssertCodeAsync(SessionErrorCode.InvalidArgument, () => Sessions.AppendAsync(key, AppendInput.Tokens(Prompt, 4, "prompt-1") with { PromptLogprobs = true }, default));
        var scored = await Sessions.AppendAsync(key, AppendInput.Tokens([7, 8, 9], 2, "scored") with { PromptLogprobs = true }, default);
        var rescored = await Sessions.AppendAsync(key, AppendInput.Tokens([7, 8, 9], 2, "scored") with { PromptLogprobs = true }, default);
        Assert.Equal([7, 8, 9], scored.PromptLogprobs.Select(t => t.TokenId));
        Assert.Equal(scored.PromptLogprobs, rescored.PromptLogprobs);
        Assert.True(rescored.Replayed);
        Assert.Equal(Prompt.Length + 3, (await Sessions.GetAsync(key, default)).Position);

        // Without an id every Append applies, and none reads as a replay.
        var anonymous = await Sessions.AppendAsync(key, AppendInput.Tokens([1, 2], 4), default);
        Assert.False(anonymous.Replayed);
        Assert.Equal(Prompt.Length + 5, anonymous.Position);
    }

    [Fact]
    public async Task A_repeated_decode_returns_exactly_what_that_request_produced()
    {
        var key = await _cluster.CreateWithPromptAsync(Tenant, "decoded", Prompt);
        var q1 = await DecodeAsync(key, "q1", 10);
        var q2 = await DecodeAsync(key, "q2", 10);

        var again = await DecodeAsync(key, "q1", 10);

        Assert.Equal(q1.Select(t => (t.TokenId, t.Position, t.Finish)), again.Select(t => (t.TokenId, t.Position, t.Finish)));
        Assert.All(again, t => Assert.True(t.Replayed));
        Assert.Equal(Prompt.Length + 20, (await Sessions.GetAsync(key, default)).Position);
        Assert.Equal(Enumerable.Range(Prompt.Length + 10, 10).Select(p => (long)p), q2.Select(t => t.Position));

        // A larger max_tokens (or any other parameter) makes it another request: refused, nothing decoded.
        await AssertCodeAsync(SessionErrorCode.InvalidArgument, () => DecodeAsync(key, "q1", 15));
        await AssertCodeAsync(SessionErrorCode.InvalidArgument, () => DecodeAsync(key, "q1", 10, stopTokenIds: [q1[3].TokenId]));
        await AssertCodeAsync(SessionErrorCode.InvalidArgument, () => DecodeAsync(key, "q1", 10, sampling: Greedy with { Seed = 9 }));
        await AssertCodeAsync(SessionErrorCode.InvalidArgument, () => DecodeAsync(key, "q1", 10, ignoreEos: true));
        Assert.Equal(Prompt.Length + 20, (await Sessions.GetAsync(key, default)).Position);

        // The stop tokens are a set: their order names the same request.
        var stops = await DecodeAsync(key, "q3", 10, stopTokenIds: [1, 2, 3]);
        Assert.Equal(stops.Select(t => t.TokenId), (await DecodeAsync(key, "q3", 10, stopTokenIds: [3, 1, 2])).Select(t => t.TokenId));
    }

    [Fact]
    public async Task An_interrupted_decode_goes_on_only_while_no_other_request_wrote_after_it()
    {
        var twin = await _cluster.CreateWithPromptAsync(Tenant, "twin", Prompt);
        var expected = await DecodeAsync(twin, "whole", 12);
        var key = await _cluster.CreateWithPromptAsync(Tenant, "interrupted", Prompt);

        // A stream the caller stops reading after 3 tokens (the session holds those and perhaps the one made ahead).
        var head = await DecodeAsync(key, "r1", 12, take: 3);
        var resumed = await DecodeAsync(key, "r1", 12);

        Assert.Equal(expected.Select(t => t.TokenId), resumed.Select(t => t.TokenId));
        Assert.Equal(head.Select(t => t.TokenId), resumed.Take(3).Select(t => t.TokenId));
        Assert.True(resumed[0].Replayed);
        Assert.Equal(FinishReason.MaxTokens, resumed[^1].Finish);

        // Once another request has written after it, an unfinished request cannot go on: its tokens would follow
        // the other's.
        await DecodeAsync(key, "r2", 12, take: 2);
        await Sessions.AppendAsync(key, AppendInput.Tokens([5, 6], 1), default);
        var position = (await Sessions.GetAsync(key, default)).Position;
        await AssertCodeAsync(SessionErrorCode.FailedPrecondition, () => DecodeAsync(key, "r2", 12));
        Assert.Equal(position, (await Sessions.GetAsync(key, default)).Position);

        // A finished one still replays.
        Assert.Equal(resumed.Select(t => t.TokenId), (await DecodeAsync(key, "r1", 12)).Select(t => t.TokenId));
    }

    [Fact]
    public async Task A_new_session_is_empty_with_no_owner_until_its_first_append()
    {
        var key = await _cluster.CreateAsync(Tenant, "fresh");
        var created = await Sessions.GetAsync(key, default);
        Assert.Equal((SessionResidency.Empty, null, 0L), (created.Residency, created.OwnerSilo, created.CacheBytes));

        // A Decode before any Append loads the (empty) session and is refused: still empty.
        await AssertCodeAsync(SessionErrorCode.FailedPrecondition, () => DecodeAsync(key, "early", 3));
        Assert.Equal(SessionResidency.Empty, (await Sessions.GetAsync(key, default)).Residency);
        Assert.Equal(SessionResidency.Empty, (await Sessions.ListAsync(Tenant, 10, null, default)).Sessions.Single(s => s.Id == "fresh").Residency);

        await Sessions.AppendAsync(key, AppendInput.Tokens(Prompt, 1), default);
        var appended = await Sessions.GetAsync(key, default);
        Assert.Equal(SessionResidency.Active, appended.Residency);
        Assert.Equal(_cluster.Cluster.Silos[0].Name, appended.OwnerSilo);
    }

    private async Task<List<DecodedToken>> DecodeAsync(
        SessionKey key, string requestId, int maxTokens, int[]? stopTokenIds = null, SamplingOptions? sampling = null, int? take = null, bool ignoreEos = false)
    {
        var options = new DecodeRequestOptions(maxTokens, sampling ?? Greedy, stopTokenIds ?? [], requestId, IgnoreEos: ignoreEos);
        var tokens = new List<DecodedToken>();
        await foreach (var token in Sessions.DecodeAsync(key, options, default))
        {
            tokens.Add(token);
            if (tokens.Count == take)
            {
                break;
            }
        }

        return tokens;
    }

    private static async Task AssertCodeAsync(SessionErrorCode code, Func<Task> call) =>
        Assert.Equal(code, (await Assert.ThrowsAsync<SessionException>(call)).Code);
}
