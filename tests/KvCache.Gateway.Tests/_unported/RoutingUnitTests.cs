using KvCache.Gateway.Routing;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Storage;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>Placement by load among Active silos, with the caller's hint.</summary>
public sealed class RoutingUnitTests
{
    private static readonly SiloAddress A = new("10.0.0.1:50061", 1);
    private static readonly SiloAddress B = new("10.0.0.2:50061", 1);
    private static readonly SiloAddress C = new("10.0.0.3:50061", 1);
    private static readonly PlacementTarget Target = new(new SessionKey("acme", "s1"), null);

    private readonly ResourceOptimizedPlacementDirector _director = new();

    [Fact]
    public void Picks_the_active_silo_with_the_fewest_sessions_then_the_most_free_cache()
    {
        Assert.Equal(B, _director.OnAddActivation(Target, [Candidate(A, 3, 100), Candidate(B, 1, 10), Candidate(C, 2, 1000)]));
        Assert.Equal(C, _director.OnAddActivation(Target, [Candidate(A, 1, 100), Candidate(B, 1, 10), Candidate(C, 1, 1000)]));
    }

    [Fact]
    public void Never_places_on_a_shutting_down_or_joining_silo()
    {
        Assert.Equal(C, _director.OnAddActivation(Target, [Candidate(A, 0, 1000, SiloStatus.ShuttingDown), Candidate(B, 0, 1000, SiloStatus.Joining), Candidate(C, 9, 1)]));
        Assert.Null(_director.OnAddActivation(Target, [Candidate(A, 0, 1000, SiloStatus.ShuttingDown)]));
    }

    [Fact]
    public void A_hint_naming_an_active_silo_wins_and_one_naming_a_draining_silo_is_ignored()
    {
        var candidates = new[] { Candidate(A, 5, 1), Candidate(B, 0, 1000), Candidate(C, 0, 1000, SiloStatus.ShuttingDown) };
        Assert.Equal(A, _director.OnAddActivation(Target with { Hint = A.Endpoint }, candidates));
        Assert.Equal(A, _director.OnAddActivation(Target with { Hint = A.ToString() }, candidates));
        Assert.Equal(B, _director.OnAddActivation(Target with { Hint = C.Endpoint }, candidates));
    }

    private static SiloCandidate Candidate(SiloAddress silo, int sessions, long free, SiloStatus status = SiloStatus.Active) =>
        new(silo, status, sessions, free, 1000);
}
