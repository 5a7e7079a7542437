using KvCache.Silo.Models;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Silo.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Xunit;

namespace KvCache.Silo.Tests.Sessions;

/// <summary>Session grains on an in-process Orleans silo, on the in-memory store and the generated demo model.</summary>
public sealed class SessionServiceUnitTests : IAsyncLifetime
{
    private const string Tenant = "acme";
    private static readonly int[] Prompt = Enumerable.Range(0, 70).Select(i => (i * 37 + 11) % 500).ToArray();

    private SessionTestCluster _cluster = null!;
    private ISessionService _sessions = null!;
    private ISessionStore _store = null!;

    public async Task InitializeAsync()
    {
        _cluster = await SessionTestCluster.StartAsync(
            settings: [new("Silo:IdleTimeout", "00:00:02")],
            configureSilo: silo => silo.Configure<GrainCollectionOptions>(o => o.CollectionQuantum = TimeSpan.FromMilliseconds(500)));
        _sessions = _cluster.Sessions;
        _store = _cluster.Store;
    }

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Greedy_decode_is_deterministic_and_positions_follow_the_prompt()
    {
        var a = await CreateWithPromptAsync("a");
        var b = await CreateWithPromptAsync("b");

        var first = await DecodeAsync(a, 12);
        var second = await DecodeAsync(b, 12);

        Assert.Equal(first.Select(t => t.TokenId), second.Select(t => t.TokenId));
        Assert.Equal(Enumerable.Range(Prompt.Length, 12).Select(p => (long)p), first.Select(t => t.Position));
        Assert.All(first, t => Assert.True(t.Logprob <= 0));
        Assert.Equal(FinishReason.MaxTokens, first[^1].Finish);
        Assert.Equal(Prompt.Length + 12, (await _sessions.GetAsync(a, default)).Position);
    }

    [Fact]
    public async Task Spilled_session_resumes_from_its_snapshot_like_an_undisturbed_twin()
    {
        var twin = await CreateWithPromptAsync("twin");
        var expected = await DecodeAsync(twin, 20);

        var key = await CreateWithPromptAsync("spilled");
        var head = await DecodeAsync(key, 8);
        var spilled = await _sessions.SpillAsync(key, default);
        Assert.Equal(SessionResidency.Spilled, spilled.Residency);
        Assert.NotNull(await _store.GetSnapshotAsync(key));
        var tail = await DecodeAsync(key, 12);

        Assert.Equal(expected.Select(t => t.TokenId), head.Concat(tail).Select(t => t.TokenId));
    }

    [Fact]
    public async Task Corrupted_snapshot_is_refused_and_the_token_log_rebuilds_the_session_exactly()
    {
        var twin = await CreateWithPromptAsync("twin");
        var expected = await DecodeAsync(twin, 10);

        var key = await CreateWithPromptAsync("corrupt");
        var head = await DecodeAsync(key, 4);
        await _sessions.SpillAsync(key, default);
        var snapshot = await _store.GetSnapshotAsync(key) ?? throw new InvalidOperationException("no snapshot");
        var chunk = new byte[1 << 20];
        var length = await _store.ReadSnapshotChunkAsync(key, snapshot.SnapshotId, 0, chunk);
        chunk[length / 2] ^= 0x40;
        await _store.WriteSnapshotChunkAsync(key, snapshot.SnapshotId, 0, chunk.AsMemory(0, length));

        var tail = await DecodeAsync(key, 6);

        Assert.Equal(expected.Select(t => t.TokenId), head.Concat(tail).Select(t => t.TokenId));
    }

    [Fact]
    public async Task Repeating_a_request_id_replays_its_tokens_then_continues()
    {
        var twin = await CreateWithPromptAsync("twin");
        var expected = await DecodeAsync(twin, 15);

        var key = await CreateWithPromptAsync("retry");
        var options = new DecodeRequestOptions(15, new GpuWorker.Sampling.SamplingOptions(0, 0, 0, 0), [], "req-1");
        var firstAttempt = new List<DecodedToken>();
        await foreach (var token in _sessions.DecodeAsync(key, options, default))
        {
            // The caller's stream breaks after 10 tokens.
            firstAttempt.Add(token);
            if (firstAttempt.Count == 10)
            {
                break;
            }
        }

        var produced = (await _sessions.GetAsync(key, default)).Position - Prompt.Length;
        var retry = await DecodeAsync(key, 15, requestId: "req-1");

        Assert.Equal(expected.Take(10).Select(t => t.TokenId), firstAttempt.Select(t => t.TokenId));
        Assert.Equal(expected.Select(t => t.TokenId), retry.Select(t => t.TokenId));
        Assert.All(retry.Take((int)produced), t => Assert.True(t.Replayed));
        Assert.All(retry.Skip((int)produced), t => Assert.False(t.Replayed));
        Assert.Equal(Prompt.Length + 15, (await _sessions.GetAsync(key, default)).Position);
    }

    [Fact]
    public async Task Idle_sessions_are_spilled_after_the_idle_timeout()
    {
        // Orleans' activation collection (Silo:IdleTimeout, here 2 s) runs on its own clock: this test waits for it.
        var key = await CreateWithPromptAsync("idle");
        Assert.Equal(SessionResidency.Active, (await _sessions.GetAsync(key, default)).Residency);
        Assert.Null(await _store.GetSnapshotAsync(key));

        var deadline = DateTime.UtcNow.AddSeconds(30);
        SessionInfo info;
        while ((info = await _sessions.GetAsync(key, default)).Residency == SessionResidency.Active && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        Assert.Equal(SessionResidency.Spilled, info.Residency);
        Assert.Equal(Prompt.Length, info.Position);
        Assert.NotNull(await _store.GetSnapshotAsync(key));
    }

    [Fact]
    public async Task A_full_cache_pool_spills_the_least_recently_used_idle_session()
    {
        // Each session needs more than half the pool: the second can only live by spilling the first.
        await using var cluster = await SessionTestCluster.StartAsync(settings: [new("Models:CacheBudgetMiB", "1")]);
        var sessions = cluster.Sessions;
        var model = cluster.Cluster.Silos[0].ServiceProvider.GetRequiredService<ModelCatalog>().Default;
        var tokensInPool = model.CacheBytesTotal / model.CacheBytesAt("full", 1);
        var prompt = Enumerable.Range(0, (int)(tokensInPool * 6 / 10)).Select(i => i % model.Config.VocabSize).ToArray();
        var a = new SessionKey(Tenant, "first");
        var b = new SessionKey(Tenant, "second");
        await sessions.CreateAsync(Tenant, null, null, a.SessionId, default);
        await sessions.CreateAsync(Tenant, null, null, b.SessionId, default);
        var appendA = await sessions.AppendAsync(a, AppendInput.Tokens(prompt, 5), default);
        var appendB = await sessions.AppendAsync(b, AppendInput.Tokens(prompt, 5), default);

        Assert.Equal(SessionResidency.Spilled, (await sessions.GetAsync(a, default)).Residency);
        Assert.Equal(SessionResidency.Active, (await sessions.GetAsync(b, default)).Residency);
        Assert.Equal(appendA.TopLogprobs, appendB.TopLogprobs);
    }

    [Fact]
    public async Task Bad_requests_are_refused_with_their_error_codes_and_tenants_are_isolated()
    {
        var key = await CreateAsync("checked");
        var vocab = (await _sessions.ListModelsAsync(Tenant, default))[0].VocabSize;

        await AssertCode(SessionErrorCode.FailedPrecondition, () => DecodeAsync(key, 3));
        await AssertCode(SessionErrorCode.InvalidArgument, () => _sessions.AppendAsync(key, AppendInput.Tokens([1, vocab], 5), default));
        await AssertCode(SessionErrorCode.InvalidArgument, () => _sessions.AppendAsync(key, AppendInput.Tokens([], 5), default));
        await AssertCode(SessionErrorCode.InvalidArgument, () => _sessions.AppendAsync(key, AppendInput.Tokens(new int[9000], 5), default));
        await AssertCode(SessionErrorCode.AlreadyExists, () => _sessions.CreateAsync(Tenant, null, null, key.SessionId, default));
        await AssertCode(SessionErrorCode.InvalidArgument, () => _sessions.CreateAsync(Tenant, "nope", null, null, default));
        await AssertCode(SessionErrorCode.InvalidArgument, () => _sessions.CreateAsync(Tenant, null, "zip", null, default));
        await AssertCode(SessionErrorCode.InvalidArgument, () => _sessions.GetAsync(new SessionKey(Tenant, "a:b"), default));
        await AssertCode(SessionErrorCode.NotFound, () => _sessions.GetAsync(new SessionKey("other", key.SessionId), default));
        await AssertCode(SessionErrorCode.NotFound, () => _sessions.AppendAsync(new SessionKey("other", key.SessionId), AppendInput.Tokens(Prompt, 5), default));
        await AssertCode(SessionErrorCode.NotFound, () => _sessions.DeleteAsync(new SessionKey("other", key.SessionId), default));
        Assert.Empty((await _sessions.ListAsync("other", 0, null, default)).Sessions);

        // Nothing above changed the session.
        Assert.Equal(0, (await _sessions.GetAsync(key, default)).Position);
        await _sessions.AppendAsync(key, AppendInput.Tokens(Prompt, 5), default);
        Assert.Equal(3, (await DecodeAsync(key, 3)).Count);
    }

    [Fact]
    public async Task Delete_removes_an_active_session_and_list_pages_through_the_rest()
    {
        var keys = new List<SessionKey>();
        for (var i = 0; i < 5; i++)
        {
            keys.Add(await CreateAsync($"list-{i}"));
        }

        await _sessions.AppendAsync(keys[0], AppendInput.Tokens(Prompt, 5), default);
        await _sessions.DeleteAsync(keys[0], default);
        await AssertCode(SessionErrorCode.NotFound, () => _sessions.GetAsync(keys[0], default));

        var seen = new List<string>();
        string? token = null;
        do
        {
            var page = await _sessions.ListAsync(Tenant, 2, token, default);
            seen.AddRange(page.Sessions.Select(s => s.Id));
            token = page.NextPageToken;
        }
        while (token is not null);

        Assert.Equal(keys.Skip(1).Select(k => k.SessionId).Order(), seen.Order());
    }

    [Fact]
    public async Task A_fork_holds_the_prefix_with_the_snapshot_that_covers_it_and_continues_like_an_undisturbed_twin()
    {
        var twin = await CreateWithPromptAsync("twin");
        var expected = await DecodeAsync(twin, 10);

        var source = await CreateWithPromptAsync("source");
        await _sessions.SpillAsync(source, default);
        await DecodeAsync(source, 5); // past the snapshot, which stays at the prompt's end

        var fork = await _sessions.ForkAsync(source, Prompt.Length, default);
        var forkKey = new SessionKey(Tenant, fork.Id);
        Assert.Equal((Prompt.Length, SessionResidency.Spilled), (fork.Position, fork.Residency));
        Assert.Equal((await _store.GetSnapshotAsync(source))!.Header.ToArray(), (await _store.GetSnapshotAsync(forkKey))!.Header.ToArray());
        Assert.Equal(expected.Select(t => t.TokenId), (await DecodeAsync(forkKey, 10)).Select(t => t.TokenId));
        Assert.Equal(Prompt.Length + 5, (await _sessions.GetAsync(source, default)).Position);

        // The snapshot covers a later position too (the fork replays the log past it), not an earlier one (the log alone).
        var later = await _sessions.ForkAsync(source, Prompt.Length + 5, default);
        var laterKey = new SessionKey(Tenant, later.Id);
        Assert.NotNull(await _store.GetSnapshotAsync(laterKey));
        Assert.Equal(expected[5..].Select(t => t.TokenId), (await DecodeAsync(laterKey, 5)).Select(t => t.TokenId));
        var earlier = await _sessions.ForkAsync(source, Prompt.Length - 10, default);
        Assert.Null(await _store.GetSnapshotAsync(new SessionKey(Tenant, earlier.Id)));
        Assert.Equal(Prompt.Length - 10, earlier.Position);

        await AssertCode(SessionErrorCode.FailedPrecondition, () => _sessions.ForkAsync(source, Prompt.Length + 6, default));
        await AssertCode(SessionErrorCode.NotFound, () => _sessions.ForkAsync(new SessionKey(Tenant, "missing"), 0, default));
        await AssertCode(SessionErrorCode.NotFound, () => _sessions.ForkAsync(new SessionKey("other", source.SessionId), 1, default));
        Assert.Empty((await _sessions.ListAsync("other", 0, null, default)).Sessions);
    }

    [Fact]
    public async Task Of_concurrent_appends_expecting_one_position_exactly_one_lands()
    {
        var key = await CreateWithPromptAsync("expected");
        var landed = await Task.WhenAll(Enumerable.Range(1, 4).Select(async i =>
        {
            try
            {
                await _sessions.AppendAsync(key, AppendInput.Tokens([i, i], 0) with { ExpectedPosition = Prompt.Length }, default);
                return true;
            }
            catch (SessionException e) when (e.Code == SessionErrorCode.Aborted)
            {
                Assert.Contains($"is at position {Prompt.Length + 2}, not the expected {Prompt.Length}", e.Message, StringComparison.Ordinal);
                return false;
            }
        }));

        Assert.Equal(1, landed.Count(l => l));
        Assert.Equal(Prompt.Length + 2, (await _sessions.GetAsync(key, default)).Position);
        await AssertCode(SessionErrorCode.InvalidArgument, () => _sessions.AppendAsync(key, AppendInput.Tokens([1], 0) with { ExpectedPosition = -1 }, default));
    }

    private Task<SessionKey> CreateAsync(string id) => _cluster.CreateAsync(Tenant, id);

    private Task<SessionKey> CreateWithPromptAsync(string id) => _cluster.CreateWithPromptAsync(Tenant, id, Prompt);

    private Task<List<DecodedToken>> DecodeAsync(SessionKey key, int maxTokens, string? requestId = null) =>
        _cluster.DecodeAsync(key, maxTokens, requestId);

    private static async Task AssertCode(SessionErrorCode code, Func<Task> call)
    {
        var ex = await Assert.ThrowsAsync<SessionException>(call);
        Assert.Equal(code, ex.Code);
    }
}
