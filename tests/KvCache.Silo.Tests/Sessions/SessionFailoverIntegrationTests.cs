using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Silo.Tests.Infrastructure;
using Orleans.Configuration;
using Orleans.TestingHost;
using Xunit;

namespace KvCache.Silo.Tests.Sessions;

/// <summary>
/// Two silos in this process (Orleans' test cluster) sharing one spill store: a silo killed mid-decode, a silo
/// stopped (drained), a live migration of a cache larger than Orleans' message limit, and a session whose epoch a
/// newer activation took. Each time the session goes on exactly like an undisturbed twin on the same model.
/// </summary>
public sealed class SessionFailoverIntegrationTests
{
    private const string Tenant = "acme";
    private static readonly int[] Prompt = Enumerable.Range(0, 48).Select(i => (i * 29 + 3) % 500).ToArray();

    [Fact]
    public async Task Killing_the_owning_silo_mid_decode_loses_and_repeats_no_token()
    {
        await using var cluster = await SessionTestCluster.StartAsync(silos: 2);
        var expected = await TwinTokensAsync(cluster, 40);
        var victim = cluster.Cluster.Silos[1];
        var key = await CreateOnAsync(cluster, victim, "killed");

        var tokens = new List<DecodedToken>();
        var killed = Task.CompletedTask;
        var options = new DecodeRequestOptions(40, Greedy, [], RequestId: "kill-mid-stream");
        await foreach (var token in cluster.Sessions.DecodeAsync(key, options, default))
        {
            tokens.Add(token);
            if (tokens.Count == 10)
            {
                // The stream is read on while the silo dies, as a gateway would.
                killed = Task.Run(() => cluster.Cluster.KillSiloAsync(victim));
            }
        }

        await killed;

        Assert.Equal(expected, tokens.Select(t => t.TokenId));
        Assert.Equal(Enumerable.Range(Prompt.Length, 40).Select(p => (long)p), tokens.Select(t => t.Position));
        var info = await cluster.Sessions.GetAsync(key, default);
        Assert.Equal(Prompt.Length + 40, info.Position);
        Assert.Equal(cluster.Cluster.Silos[0].Name, info.OwnerSilo);
        Assert.Equal(Prompt.Length + 40, await cluster.Store.GetTokenCountAsync(key));
    }

    [Fact]
    public async Task Stopping_a_silo_moves_its_sessions_to_the_other_silo_first()
    {
        await using var cluster = await SessionTestCluster.StartAsync(silos: 2);
        var expected = await TwinTokensAsync(cluster, 20);
        var leaving = cluster.Cluster.Silos[1];
        var key = await CreateOnAsync(cluster, leaving, "drained");
        var head = await cluster.DecodeAsync(key, 8);

        await cluster.Cluster.StopSiloAsync(leaving);

        var moved = await cluster.Sessions.GetAsync(key, default);
        Assert.Equal(SessionResidency.Active, moved.Residency);
        Assert.Equal(cluster.Cluster.Silos[0].Name, moved.OwnerSilo);
        var tail = await cluster.DecodeAsync(key, 12);
        Assert.Equal(expected, head.Concat(tail).Select(t => t.TokenId));
    }

    [Fact]
    public async Task A_cache_larger_than_the_message_limit_migrates_through_the_spill_store()
    {
        const int messageLimit = 64 * 1024;
        await using var cluster = await SessionTestCluster.StartAsync(
            silos: 2,
            configureSilo: silo => silo.Configure<SiloMessagingOptions>(o => o.MaxMessageBodySize = messageLimit));
        var expected = await TwinTokensAsync(cluster, 16);
        var source = cluster.Cluster.Silos[0];
        var target = cluster.Cluster.Silos[1];
        var key = await CreateOnAsync(cluster, source, "large");
        var head = await cluster.DecodeAsync(key, 6);

        var (result, session) = await cluster.Sessions.MigrateAsync(key, target.Name, default);

        Assert.True(result.CacheBytes > messageLimit, $"cache of {result.CacheBytes} bytes is not over the {messageLimit}-byte message limit");
        Assert.Equal(source.Name, result.FromSilo);
        Assert.Equal(target.Name, result.ToSilo);
        Assert.Equal(target.Name, session.OwnerSilo);
        Assert.Equal(Prompt.Length + 6, session.Position);
        var tail = await cluster.DecodeAsync(key, 10);
        Assert.Equal(expected, head.Concat(tail).Select(t => t.TokenId));
    }

    [Fact]
    public async Task An_activation_whose_epoch_was_taken_writes_nothing_and_the_call_lands_once_on_a_new_activation()
    {
        await using var cluster = await SessionTestCluster.StartAsync(silos: 1);
        int[] turn = [7, 8, 9, 10];
        var twin = await cluster.CreateWithPromptAsync(Tenant, "twin", Prompt);
        await cluster.DecodeAsync(twin, 3);
        await cluster.Sessions.AppendAsync(twin, AppendInput.Tokens(turn, 0), default);
        var expected = await cluster.DecodeAsync(twin, 5);

        var key = await cluster.CreateWithPromptAsync(Tenant, "fenced", Prompt);
        await cluster.DecodeAsync(key, 3);

        // Another activation (as on a silo that took the session over) takes a newer epoch.
        await cluster.Store.TakeEpochAsync(key);
        var appended = await cluster.Sessions.AppendAsync(key, AppendInput.Tokens(turn, 0), default);

        Assert.Equal(Prompt.Length + 3 + turn.Length, appended.Position);
        Assert.Equal(Prompt.Length + 3 + turn.Length, await cluster.Store.GetTokenCountAsync(key));
        var tokens = await cluster.DecodeAsync(key, 5);
        Assert.Equal(expected.Select(t => t.TokenId), tokens.Select(t => t.TokenId));
    }

    [Fact]
    public async Task An_append_whose_owner_is_killed_between_its_log_write_and_its_reply_applies_once()
    {
        int[] turn = [7, 8, 9, 10, 11];
        var (store, faults) = StoreFaults.HangAfterAppend(new InMemorySessionStore(), "turn-2");
        await using var cluster = await SessionTestCluster.StartAsync(silos: 2, store: store);
        try
        {
            var twin = await cluster.CreateWithPromptAsync(Tenant, "twin", Prompt);
            var expected = await cluster.Sessions.AppendAsync(twin, AppendInput.Tokens(turn, 3), default);
            var victim = cluster.Cluster.Silos[1];
            var key = await CreateOnAsync(cluster, victim, "killed");

            // The write lands in the store, then the owner dies before answering; the caller's deadline passes.
            using var deadline = new CancellationTokenSource();
            var append = cluster.Sessions.AppendAsync(key, AppendInput.Tokens(turn, 3, "turn-2"), deadline.Token);
            await faults.Written;
            await cluster.Cluster.KillSiloAsync(victim);
            await deadline.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => append);

            // The caller sends it again: the session's next activation finds the request's recorded result.
            var retried = await cluster.Sessions.AppendAsync(key, AppendInput.Tokens(turn, 3, "turn-2"), default);
            Assert.True(retried.Replayed);
            Assert.Equal((Prompt.Length + turn.Length, turn.Length), (retried.Position, retried.AppendedTokens));
            Assert.Equal(expected.TopLogprobs, retried.TopLogprobs);
            Assert.Equal(Prompt.Length + turn.Length, await cluster.Store.GetTokenCountAsync(key));
            Assert.Equal(Prompt.Length + turn.Length, (await cluster.Sessions.GetAsync(key, default)).Position);
            Assert.Equal(
                (await cluster.DecodeAsync(twin, 6)).Select(t => t.TokenId),
                (await cluster.DecodeAsync(key, 6)).Select(t => t.TokenId));
        }
        finally
        {
            faults.Release();
        }
    }

    private static readonly SamplingOptions Greedy = new(0, 0, 0, 0);

    private static async Task<int[]> TwinTokensAsync(SessionTestCluster cluster, int count)
    {
        var twin = await cluster.CreateWithPromptAsync(Tenant, "twin", Prompt);
        return [.. (await cluster.DecodeAsync(twin, count)).Select(t => t.TokenId)];
    }

    /// <summary>Creates a session with the prompt on <paramref name="silo"/>, through the caller's placement hint.</summary>
    private static async Task<SessionKey> CreateOnAsync(SessionTestCluster cluster, InProcessSiloHandle silo, string id)
    {
        RequestContext.Set(PlacementHint.RequestContextKey, silo.Name);
        try
        {
            var key = await cluster.CreateWithPromptAsync(Tenant, id, Prompt);
            Assert.Equal(silo.Name, (await cluster.Sessions.GetAsync(key, default)).OwnerSilo);
            return key;
        }
        finally
        {
            RequestContext.Remove(PlacementHint.RequestContextKey);
        }
    }
}
