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
/// Two silo processes behind a routing gateway process on a real redis-server: placement spreads sessions, a
/// kill -9 of the owner mid-Decode is invisible to the client, SIGTERM moves the sessions off and leaves, and the silos'
/// internal endpoint takes only the cluster secret.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class ClusterIntegrationTests : IAsyncLifetime
{
    private static readonly int[] Prompt = Enumerable.Range(0, 48).Select(i => (i * 331 + 17) % 8192).ToArray();

    private ProcessCluster _cluster = null!;

    private KvCacheClient Client => _cluster.Gateway.Client;

    public async Task InitializeAsync() => _cluster = await ProcessCluster.StartAsync(silos: 2);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Sessions_created_through_the_gateway_are_spread_over_both_silos_and_a_hint_picks_one()
    {
        var owners = new List<string>();
        for (var i = 0; i < 8; i++)
        {
            await CreateWithPromptAsync($"spread-{i}");
            owners.Add((await Client.GetSessionAsync(new GetSessionRequest { SessionId = $"spread-{i}" })).OwnerSilo);
        }

        Assert.Equal(["silo-0", "silo-1"], owners.Distinct().Order());

        var hinted = new Metadata { { PlacementHint.Header, _cluster.Silo("silo-1").Endpoint } };
        await Client.CreateSessionAsync(new CreateSessionRequest { SessionId = "hinted" }, new CallOptions(hinted));
        await Client.AppendAsync(new AppendRequest { SessionId = "hinted", TokenIds = { Prompt } }, new CallOptions(hinted));
        var session = await Client.GetSessionAsync(new GetSessionRequest { SessionId = "hinted" });
        Assert.Equal(SessionState.Active, session.State);
        Assert.Equal("silo-1", session.OwnerSilo);
    }

    [Fact]
    public async Task Kill_9_of_the_owner_during_a_decode_is_invisible_to_the_client_of_the_gateway()
    {
        var expected = await DecodeTwinAsync("undisturbed");

        await CreateWithPromptAsync("victim");
        var owner = _cluster.Silo((await Client.GetSessionAsync(new GetSessionRequest { SessionId = "victim" })).OwnerSilo);
        var survivor = _cluster.Silos.Single(s => s != owner);
        var received = new List<DecodeEvent>();
        using (var call = Client.Decode(DecodeCalls.Greedy("victim", 200, "turn-1")))
        {
            while (await call.ResponseStream.MoveNext())
            {
                received.Add(call.ResponseStream.Current);
                if (received.Count == 10)
                {
                    await owner.KillAsync();
                }
            }
        }

        Assert.Equal(expected, received.Select(e => e.TokenId));
        Assert.Equal(Enumerable.Range(Prompt.Length, 200).Select(p => (long)p), received.Select(e => e.Position));
        Assert.Equal(FinishReason.MaxTokens, received[^1].FinishReason);

        // The stream really moved: the survivor owns the session now, at its full length.
        var after = await Client.GetSessionAsync(new GetSessionRequest { SessionId = "victim" });
        Assert.Equal(SessionState.Active, after.State);
        Assert.Equal(survivor.Name, after.OwnerSilo);
        Assert.Equal(Prompt.Length + 200, after.Position);
        Assert.Contains("continuing on the new owner", _cluster.Gateway.Output);
    }

    [Fact]
    public async Task A_silo_stopped_with_SIGTERM_moves_its_sessions_to_the_other_and_leaves_and_they_resume_there()
    {
        var expected = await DecodeTwinAsync("twin");
        var leaving = _cluster.Silo("silo-0");
        var hinted = new CallOptions(new Metadata { { PlacementHint.Header, leaving.Endpoint } });
        await Client.CreateSessionAsync(new CreateSessionRequest { SessionId = "drained" }, hinted);
        await Client.AppendAsync(new AppendRequest { SessionId = "drained", TokenIds = { Prompt } }, hinted);
        var first = await DecodeCalls.ReadAllAsync(Client.Decode(DecodeCalls.Greedy("drained", 50)));
        Assert.Equal("silo-0", (await Client.GetSessionAsync(new GetSessionRequest { SessionId = "drained" })).OwnerSilo);

        await leaving.StopAsync();

        Assert.Contains("sessions to other silos, spilled 0, and left the cluster", leaving.Output);
        Assert.Contains($"Migrated session dev/drained to {_cluster.Silo("silo-1").Endpoint}@", leaving.Output);
        Assert.Equal(SiloStatus.Dead, (await _cluster.MembersAsync())[leaving.Endpoint]);
        var rest = await DecodeCalls.ReadAllAsync(Client.Decode(DecodeCalls.Greedy("drained", 150)));
        Assert.Equal(expected, first.Concat(rest).Select(e => e.TokenId));
        Assert.Equal("silo-1", (await Client.GetSessionAsync(new GetSessionRequest { SessionId = "drained" })).OwnerSilo);
        Assert.Contains("Activated session dev/drained: 98 tokens, snapshot at 98, replayed 0", _cluster.Silo("silo-1").Output);
    }

    [Fact]
    public async Task A_silos_internal_endpoint_takes_the_cluster_secret_and_nothing_else()
    {
        var silo = _cluster.Silos[0];
        var noSecret = await Assert.ThrowsAsync<RpcException>(() => silo.Client.GetStatsAsync(new GetStatsRequest()));
        var tenantKey = await Assert.ThrowsAsync<RpcException>(() => silo.Client.GetSessionAsync(
            new SessionCall { Tenant = "dev", SessionId = "any" },
            new CallOptions(new Metadata { { "authorization", "Bearer dev" } })));
        var wrongSecret = await Assert.ThrowsAsync<RpcException>(() => silo.Client.CreateSessionAsync(
            new CreateSessionCall { Tenant = "dev", Request = new CreateSessionRequest { SessionId = "sneaky" } },
            new CallOptions(SiloProtocol.Headers("not-the-cluster-secret"))));

        Assert.Equal(StatusCode.Unauthenticated, noSecret.StatusCode);
        Assert.Equal(StatusCode.Unauthenticated, tenantKey.StatusCode);
        Assert.Equal(StatusCode.Unauthenticated, wrongSecret.StatusCode);
        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(() => Client.GetSessionAsync(new GetSessionRequest { SessionId = "sneaky" }))).StatusCode);
        Assert.DoesNotContain(ProcessCluster.Secret, silo.Output);
        Assert.DoesNotContain(ProcessCluster.Secret, _cluster.Gateway.Output);

        var stats = await silo.Client.GetStatsAsync(new GetStatsRequest(), new CallOptions(SiloProtocol.Headers(ProcessCluster.Secret)));
        Assert.Equal(silo.Name, stats.SiloName);
        Assert.StartsWith(silo.Endpoint + "@", stats.SiloAddress);
    }

    private async Task CreateWithPromptAsync(string id)
    {
        await Client.CreateSessionAsync(new CreateSessionRequest { SessionId = id });
        await Client.AppendAsync(new AppendRequest { SessionId = id, TokenIds = { Prompt } });
    }

    private async Task<int[]> DecodeTwinAsync(string id)
    {
        await CreateWithPromptAsync(id);
        var events = await DecodeCalls.ReadAllAsync(Client.Decode(DecodeCalls.Greedy(id, 200)));
        Assert.Equal(200, events.Count);
        return events.Select(e => e.TokenId).ToArray();
    }
}
