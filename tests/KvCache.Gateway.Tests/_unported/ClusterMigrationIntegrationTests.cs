using KvCache.Contracts.Admin.V1;
using KvCache.Contracts.Internal.V1;
using KvCache.Contracts.V1;
using KvCache.Gateway.Routing;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Serving;
using KvCache.Transport;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// Three silo processes behind a routing gateway on a real redis-server: live migration through the admin API,
/// drain on SIGTERM, a thousand racing activations, a zombie silo, rebalancing onto a silo that joins.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class ClusterMigrationIntegrationTests : IAsyncLifetime
{
    private static readonly int[] Prompt = Enumerable.Range(0, 48).Select(i => (i * 331 + 17) % 8192).ToArray();

    private ProcessCluster _cluster = null!;

    private KvCacheClient Client => _cluster.Gateway.Client;

    private static CallOptions Secret => new(SiloProtocol.Headers(ProcessCluster.Secret));

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
            TargetSilo = _cluster.Silo("silo-2").Endpoint,
        });
        var tail = await racing;

        Assert.Equal(expected, head.Concat(tail));
        Assert.StartsWith(_cluster.Silo("silo-0").Endpoint + "@", migrated.FromSilo);
        Assert.StartsWith(_cluster.Silo("silo-2").Endpoint + "@", migrated.ToSilo);
        Assert.True(migrated.CacheBytes > 0);
        var after = await Client.GetSessionAsync(new GetSessionRequest { SessionId = "moved" });
        Assert.Equal(("silo-2", SessionState.Active, Prompt.Length + 40L), (after.OwnerSilo, after.State, after.Position));

        var silos = (await _cluster.Admin.ListSilosAsync(new ListSilosRequest())).Silos;
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

        var drained = leaving.Output.Split('\n').Where(l => l.Contains("and left the cluster", StringComparison.Ordinal)).ToList();
        Assert.Equal(["moved 50 sessions to other silos, spilled 0, and left the cluster"], drained.Select(l => l[l.IndexOf("moved", StringComparison.Ordinal)..].TrimEnd()));
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
    public async Task A_thousand_concurrent_activations_of_one_session_through_three_silos_end_with_exactly_one_owner()
    {
        await _cluster.Silos[0].Client.CreateSessionAsync(new CreateSessionCall { Tenant = "dev", Request = new CreateSessionRequest { SessionId = "hot" } }, Secret);
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 1000).Select(async i =>
        {
            var silo = _cluster.Silos[i % 3];
            var call = new AppendCall { Tenant = "dev", Request = new AppendRequest { SessionId = "hot", TopLogprobs = 1, TokenIds = { i % 500 } } };
            try
            {
                await silo.Client.AppendAsync(call, Secret);
                return (Silo: silo.Name, Owner: (string?)null, Code: StatusCode.OK);
            }
            catch (RpcException e)
            {
                return (Silo: silo.Name, Owner: e.Trailers.GetValue(SiloProtocol.OwnerTrailer), Code: e.StatusCode);
            }
        }));

        var served = outcomes.Where(o => o.Code == StatusCode.OK).ToList();
        var owner = Assert.Single(served.Select(o => o.Silo).Distinct());
        var ownerSilo = _cluster.Silo(owner);
        Assert.All(outcomes.Where(o => o.Code != StatusCode.OK), o =>
        {
            Assert.Equal(StatusCode.Aborted, o.Code);
            Assert.StartsWith(ownerSilo.Endpoint + "@", o.Owner);
        });

        // Every append the owner accepted is in the log, nothing else; the other silos hold no activation.
        var session = await Client.GetSessionAsync(new GetSessionRequest { SessionId = "hot" });
        Assert.Equal((owner, (long)served.Count), (session.OwnerSilo, session.Position));
        foreach (var silo in _cluster.Silos.Where(s => s != ownerSilo))
        {
            Assert.Equal(0, (await silo.Client.GetStatsAsync(new GetStatsRequest(), Secret)).ActiveSessions);
        }
    }

    [Fact]
    public async Task A_zombie_silo_process_resumed_after_its_lease_cannot_write_and_stops_serving()
    {
        int[] more = [11, 22, 33, 44, 55];
        await TwinAsync("twin", Prompt, 10);
        await Client.AppendAsync(new AppendRequest { SessionId = "twin", TokenIds = { more } });
        var expected = await DecodeAsync("twin", 10);

        var zombie = _cluster.Silo("silo-0");
        await CreateOnAsync("silo-0", "z", Prompt);
        await DecodeAsync("z", 10);
        await zombie.PauseAsync();

        // Once the others declared it dead and the gateway saw that, the next call takes the session over elsewhere.
        while ((await _cluster.Admin.ListSilosAsync(new ListSilosRequest())).Silos.Single(s => s.Name == "silo-0").Status != "Dead")
        {
            await Task.Delay(100);
        }

        await Client.AppendAsync(new AppendRequest { SessionId = "z", TokenIds = { more } });
        var owner = (await Client.GetSessionAsync(new GetSessionRequest { SessionId = "z" })).OwnerSilo;
        Assert.NotEqual("silo-0", owner);

        await zombie.ResumeAsync();
        var write = await Assert.ThrowsAsync<RpcException>(() => zombie.Client.AppendAsync(
            new AppendCall { Tenant = "dev", Request = new AppendRequest { SessionId = "z", TokenIds = { 7 } } }, Secret));
        Assert.Contains(write.StatusCode, new[] { StatusCode.Unavailable, StatusCode.Aborted });
        await zombie.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.Contains("declared dead", zombie.Output);
        // Whatever it tried first (the append above, or its shutdown snapshot) was refused by the epoch.
        Assert.True(
            zombie.Output.Contains("(stale epoch)", StringComparison.Ordinal) || zombie.Output.Contains("Token log write for session dev/z failed", StringComparison.Ordinal),
            zombie.Output);
        Assert.Equal(SiloStatus.Dead, (await _cluster.MembersAsync())[zombie.Endpoint]);
        var session = await Client.GetSessionAsync(new GetSessionRequest { SessionId = "z" });
        Assert.Equal(Prompt.Length + 15L, session.Position);
        Assert.Equal(expected, await DecodeAsync("z", 10));
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
        Assert.Equal(3, (await newcomer.Client.GetStatsAsync(new GetStatsRequest(), Secret)).ActiveSessions);
    }

    private async Task CreateOnAsync(string silo, string id, int[] prompt)
    {
        var hinted = new CallOptions(new Metadata { { PlacementHint.Header, _cluster.Silo(silo).Endpoint } });
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
