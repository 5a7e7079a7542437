using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Storage;

namespace KvCache.Gateway.Routing;

/// <summary>A session about to be activated, and the silo its caller asked for (<see cref="PlacementHint"/>), if any.</summary>
public sealed record PlacementTarget(SessionKey GrainId, string? Hint);

/// <summary>A silo as placement sees it: status from membership, load from its last stats report plus placements since.</summary>
public sealed record SiloCandidate(SiloAddress Silo, SiloStatus Status, int ActiveSessions, long CacheBytesFree, long CacheBytesTotal);

/// <summary>Picks the silo a session with no live owner activates on (Orleans' IPlacementDirector, reduced).</summary>
public interface IPlacementDirector
{
    /// <returns>One of <paramref name="candidates"/>, or null when none may take the session.</returns>
    SiloAddress? OnAddActivation(PlacementTarget target, IReadOnlyList<SiloCandidate> candidates);
}

/// <summary>The placement hint a caller may send as metadata; flows with the call like Orleans' RequestContext.</summary>
public static class PlacementHint
{
    /// <summary>Request metadata naming a silo (<c>host:port</c> or its full address) to place a new activation on.</summary>
    public const string Header = "x-kvcache-placement-hint";

    private static readonly AsyncLocal<string?> s_current = new();

    public static string? Current
    {
        get => s_current.Value;
        set => s_current.Value = value;
    }
}

/// <summary>
/// Places by load: only Active silos (never Joining or ShuttingDown ones); the hinted silo if it is one of them;
/// otherwise the silo with the fewest active sessions, then the most free cache memory.
/// </summary>
public sealed class ResourceOptimizedPlacementDirector : IPlacementDirector
{
    public SiloAddress? OnAddActivation(PlacementTarget target, IReadOnlyList<SiloCandidate> candidates)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(candidates);
        var active = candidates.Where(c => c.Status == SiloStatus.Active).ToList();
        if (target.Hint is { Length: > 0 } hint
            && active.FirstOrDefault(c => c.Silo.Endpoint == hint || c.Silo.ToString() == hint) is { } hinted)
        {
            return hinted.Silo;
        }

        return active
            .OrderBy(c => c.ActiveSessions)
            .ThenByDescending(c => c.CacheBytesFree)
            .ThenBy(c => c.Silo.ToString(), StringComparer.Ordinal)
            .FirstOrDefault()?.Silo;
    }
}
