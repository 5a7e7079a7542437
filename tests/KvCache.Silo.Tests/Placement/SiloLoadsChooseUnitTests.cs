using System.Net;
using KvCache.Silo.Placement;
using Orleans.Runtime;
using Xunit;

namespace KvCache.Silo.Tests.Placement;

/// <summary>The placement rule: the caller's hint first, then fewest sessions, then most free cache; never a draining silo.</summary>
public sealed class SiloLoadsChooseUnitTests
{
    private static readonly SiloAddress A = Silo(11111);
    private static readonly SiloAddress B = Silo(11112);
    private static readonly SiloAddress C = Silo(11113);

    [Fact]
    public void Fewest_sessions_wins_over_free_memory()
    {
        var loads = Loads(Load(A, "a", sessions: 3, free: 900), Load(B, "b", sessions: 1, free: 100), Load(C, "c", sessions: 2, free: 500));

        Assert.Equal(B, SiloLoads.Choose([A, B, C], loads, hint: null));
    }

    [Fact]
    public void Among_equal_session_counts_the_most_free_cache_bytes_wins()
    {
        var loads = Loads(Load(A, "a", sessions: 2, free: 100), Load(B, "b", sessions: 2, free: 700), Load(C, "c", sessions: 2, free: 300));

        Assert.Equal(B, SiloLoads.Choose([A, B, C], loads, hint: null));
    }

    [Fact]
    public void A_draining_silo_is_never_chosen_even_when_emptiest_or_hinted()
    {
        var loads = Loads(Load(A, "a", sessions: 5, free: 100), Load(B, "b", sessions: 0, free: 900, draining: true));

        Assert.Equal(A, SiloLoads.Choose([A, B], loads, hint: null));
        Assert.Equal(A, SiloLoads.Choose([A, B], loads, hint: "b"));
    }

    [Fact]
    public void Every_candidate_draining_gives_no_silo()
    {
        var loads = Loads(Load(A, "a", sessions: 0, free: 1, draining: true));

        Assert.Null(SiloLoads.Choose([A], loads, hint: null));
    }

    [Fact]
    public void The_hint_names_a_silo_by_name_endpoint_or_address_and_wins_over_load()
    {
        var loads = Loads(Load(A, "a", sessions: 0, free: 900), Load(B, "silo-b", sessions: 9, free: 1));

        Assert.Equal(B, SiloLoads.Choose([A, B], loads, hint: "silo-b"));
        Assert.Equal(B, SiloLoads.Choose([A, B], loads, hint: "127.0.0.1:11112"));
        Assert.Equal(B, SiloLoads.Choose([A, B], loads, hint: B.ToParsableString()));
        Assert.Equal(A, SiloLoads.Choose([A, B], loads, hint: "no-such-silo"));
    }

    [Fact]
    public void A_silo_that_has_not_published_counts_as_empty()
    {
        var loads = Loads(Load(A, "a", sessions: 1, free: 900));

        Assert.Equal(B, SiloLoads.Choose([A, B], loads, hint: null));
    }

    [Fact]
    public void Only_candidates_are_chosen()
    {
        var loads = Loads(Load(A, "a", sessions: 4, free: 1), Load(C, "c", sessions: 0, free: 900));

        Assert.Equal(A, SiloLoads.Choose([A], loads, hint: "c"));
    }

    private static SiloAddress Silo(int port) => SiloAddress.New(new IPEndPoint(IPAddress.Loopback, port), 1);

    private static SiloLoad Load(SiloAddress address, string name, int sessions, long free, bool draining = false) =>
        new(address, name, sessions, free, 1000, draining, DateTimeOffset.UnixEpoch);

    private static Dictionary<SiloAddress, SiloLoad> Loads(params SiloLoad[] loads) => loads.ToDictionary(l => l.Address);
}
