using Grpc.Core;
using KvCache.Contracts.Admin.V1;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.Silo.Placement;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// Three Orleans silo processes behind routing gateways on a real redis-server: live migration through the admin
/// API, drain on SIGTERM, racing activations through three gateways, a zombie silo, rebalancing onto a
/// silo that joins.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class ClusterMigrationIntegrationTests : IAsyncLifetime
{
    private static readonly int[] Prompt = Enumerable.Range(0, 48).Select(i => (i * 331 + 17) % 8192).ToArray();

    private ProcessCluster _cluster = null!;

    private KvCacheClient Client => _cluster.Gateway.Client;

    public async Task InitializeAsync() => _cluster = await ProcessCluster.StartAsync(silos: 3, ["--Models:CacheBudgetMiB=480"]);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task MigrateSession_moves_a_live_session_and_a_decode_racing_the_copy_sees_no_error()
    {
        var expected = await TwinAsync("twin", Prompt, 40);
        await CreateOnAsync("silo-0", "moved", Prompt);
        var head = await DecodeAsync("moved", 20);

        // A decode racing the migration runs before the copy (on the source) or after it (on the target).
        var racing = DecodeAsync("moved", 20);
        var migrated = await _cluster.Admin.MigrateSessionAsync(new MigrateSessionRequest
        {
            Tenant = "dev",
            SessionId = "moved",
            TargetSilo = "silo-2",
        });
        var tail = await racing;

        Assert.Equal(expected, head.Concat(tail));
        Assert.Equal(("silo-0", "silo-2"), (migrated.FromSilo, migrated.ToSilo));
        Assert.True(migrated.CacheBytes > 0);
        var after = await Client.GetSessionAsync(new GetSessionRequest { SessionId = "moved" });
        Assert.Equal(("silo-2", SessionState.Active, Prompt.Length + 40L), (after.OwnerSilo, after.State, after.Position));

        var silos = await _cluster.ListSilosAsync();
        Assert.Equal(["silo-0", "silo-1", "silo-2"], silos.Select(s => s.Name).Order());
        Assert.All(silos, s => Assert.Equal("Active", s.Status));
    }

    [Fact]
    public async Task Draining_a_silo_with_50_sessions_on_SIGTERM_moves_each_to_a_live_silo_at_its_position()
    {
        var leaving = _cluster.Silo("silo-0");
        var prompts = Enumerable.Range(0, 50).Select(i => Enumerable.Range(0, 16).Select(j => (i * 977 + j * 131 + 5) % 8192).ToArray()).ToArray();
        await Task.WhenAll(Enumerable.Range(0, 50).Select(i => CreateOnAsync("silo-0", $"d{i}", prompts[i])));
        int[] sample = [0, 17, 49];
        var twins = new Dictionary<int, int[]>();
        foreach (var i in sample)
        {
            twins[i] = await TwinAsync($"twin-{i}", prompts[i], 8, on: "silo-1");
        }

        await leaving.StopAsync();

        Assert.Equal(
            ["Silo silo-0 drained: moved 50 sessions to other silos, spilled 0, and is leaving the cluster"],
            Lines(leaving.Output, "Silo silo-0 drained"));
        var owners = new List<string>();
        for (var i = 0; i < 50; i++)
        {
            // Pre-activated on the target: active there before any call touched it.
            var session = await Client.GetSessionAsync(new GetSessionRequest { SessionId = $"d{i}" });
            Assert.Equal((SessionState.Active, 16L), (session.State, session.Position));
            owners.Add(session.OwnerSilo);
        }

        Assert.Equal(["silo-1", "silo-2"], owners.Distinct().Order());
        foreach (var i in sample)
        {
            Assert.Equal(twins[i], await DecodeAsync($"d{i}", 8));
        }
    }

    [Fact]
    public async Task A_thousand_concurrent_activations_of_one_session_through_three_gateways_end_as_one_activation()
    {
        await _cluster.AddGatewayAsync();
        await _cluster.AddGatewayAsync();
        await CreateOnAsync("silo-0", "hot", Prompt[..8]);

        // No activation is left: the calls below race to create one, on whichever silo each gateway asks.
        await Client.SpillSessionAsync(new SpillSessionRequest { SessionId = "hot" });
        var before = _cluster.Silos.ToDictionary(s => s.Name, s => s.Output.Length);
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 1000).Select(async i =>
        {
            var gateway = _cluster.Gateways[i % 3];
            try
            {
                await gateway.Client.AppendAsync(new AppendRequest { SessionId = "hot", TopLogprobs = 1, TokenIds = { i } });
                return StatusCode.OK;
            }
            catch (RpcException e)
            {
                return e.StatusCode;
            }
        }));

        // Orleans forwards every call to the one activation that won: none fails, and it loaded the session once.
        Assert.Equal(1000, outcomes.Count(c => c == StatusCode.OK));
        var activations = _cluster.Silos.SelectMany(s => Lines(s.Output[before[s.Name]..], "Activated session dev/hot:").Select(_ => s.Name)).ToList();
        var owner = Assert.Single(activations);
        var session = await Client.GetSessionAsync(new GetSessionRequest { SessionId = "hot" });
        Assert.Equal((owner, 1008L), (session.OwnerSilo, session.Position));
        var silos = await _cluster.ListSilosAsync();
        Assert.Equal(1, silos.Single(s => s.Name == owner).ActiveSessions);
        Assert.All(silos.Where(s => s.Name != owner), s => Assert.Equal(0, s.ActiveSessions));

        // Every append is in the log once.
        var log = await SessionLogs.ReadAsync(_cluster.RedisEndpoint, "dev", "hot");
        Assert.Equal(Prompt[..8], log[..8]);
        Assert.Equal(Enumerable.Range(0, 1000), log[8..].Order());
    }

    [Fact]
    public async Task A_zombie_silo_resumed_after_it_was_declared_dead_writes_nothing_and_stops()
    {
        var expected = await TwinAsync("twin", Prompt, 200);
        var zombie = _cluster.Silo("silo-0");
        await CreateOnAsync("silo-0", "z", Prompt);

        // Frozen mid-Decode: the gateway's stream stalls until the others declare silo-0 dead, then continues on the
        // session's new activation from the token log.
        var received = new List<int>();
        using (var call = Client.Decode(DecodeCalls.Greedy("z", 200, "turn-1")))
        {
            while (await call.ResponseStream.MoveNext())
            {
                received.Add(call.ResponseStream.Current.TokenId);
                if (received.Count == 10)
                {
                    await zombie.PauseAsync();
                }
            }
        }

        Assert.Equal(expected, received);
        Assert.Equal("Dead", (await _cluster.ListSilosAsync()).Single(s => s.Name == "silo-0").Status);
        var owner = (await Client.GetSessionAsync(new GetSessionRequest { SessionId = "z" })).OwnerSilo;
        Assert.Contains(owner, new[] { "silo-1", "silo-2" });

        // Resumed, it may run its old activation for a moment, but any write it tries carries a stale epoch and is
        // refused (the store's fencing, shown in KvCache.Silo.Tests' ZombieSiloIntegrationTests); Orleans, finding at
        // its first membership refresh that it was declared dead, stops the process with a fatal error.
        await zombie.ResumeAsync();
        Assert.NotEqual(0, await zombie.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("I have been told I am dead", zombie.Output);

        // Nothing of the zombie landed: the log holds the prompt and exactly the tokens the client received.
        int[] written = [.. Prompt, .. expected];
        Assert.Equal(written, await SessionLogs.ReadAsync(_cluster.RedisEndpoint, "dev", "z"));
        var session = await Client.GetSessionAsync(new GetSessionRequest { SessionId = "z" });
        Assert.Equal((owner, Prompt.Length + 200L), (session.OwnerSilo, session.Position));
        Assert.Equal(await DecodeAsync("twin", 10), await DecodeAsync("z", 10));
    }

    [Fact]
    public async Task A_silo_that_joins_gets_a_bounded_share_of_the_idle_sessions()
    {
        await Task.WhenAll(Enumerable.Range(0, 12).Select(i => CreateOnAsync($"silo-{i % 3}", $"r{i}", Prompt[..8])));

        var newcomer = await _cluster.AddSiloAsync();

        // Each of the three moves its fair share, 4 / 4 silos = 1 session, and no more.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        string[] owners;
        do
        {
            await Task.Delay(250);
            owners = await Task.WhenAll(Enumerable.Range(0, 12).Select(async i => (await Client.GetSessionAsync(new GetSessionRequest { SessionId = $"r{i}" })).OwnerSilo));
        }
        while (owners.Count(o => o == newcomer.Name) < 3 && DateTime.UtcNow < deadline);

        Assert.Equal(3, owners.Count(o => o == newcomer.Name));
        Assert.Equal(["silo-0", "silo-1", "silo-2"], owners.Where(o => o != newcomer.Name).Distinct().Order());
        Assert.Equal(3, (await _cluster.ListSilosAsync()).Single(s => s.Name == newcomer.Name).ActiveSessions);
        foreach (var silo in _cluster.Silos.Where(s => s != newcomer))
        {
            Assert.Contains($"Rebalanced 1 sessions onto {newcomer.Name}, which joined the cluster", silo.Output);
        }
    }

    /// <summary>The lines of a process's output that contain <paramref name="text"/>, each from that text on.</summary>
    private static List<string> Lines(string output, string text) =>
        [.. output.Split('\n').Where(l => l.Contains(text, StringComparison.Ordinal)).Select(l => l[l.IndexOf(text, StringComparison.Ordinal)..].TrimEnd())];

    private async Task CreateOnAsync(string silo, string id, int[] prompt)
    {
        var hinted = new CallOptions(new Metadata { { PlacementHint.Header, silo } });
        await Client.CreateSessionAsync(new CreateSessionRequest { SessionId = id }, hinted);
        await Client.AppendAsync(new AppendRequest { SessionId = id, TokenIds = { prompt } }, hinted);
    }

    private async Task<int[]> TwinAsync(string id, int[] prompt, int tokens, string on = "silo-1")
    {
        await CreateOnAsync(on, id, prompt);
        return await DecodeAsync(id, tokens);
    }

    private Task<int[]> DecodeAsync(string id, int tokens) => DecodeCalls.GreedyTokensAsync(Client, id, tokens);
}
