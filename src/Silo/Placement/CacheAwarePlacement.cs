using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace KvCache.Silo.Placement;

/// <summary>
/// Places a session on the silo with the fewest sessions and the most free KV-cache memory, never on one that is
/// draining, and on the caller's hinted silo first (see <see cref="CacheAwarePlacementDirector"/>).
/// </summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking]
public sealed class CacheAwarePlacement : PlacementStrategy
{
    public static CacheAwarePlacement Instance { get; } = new();
}

/// <summary>Marks a grain class for <see cref="CacheAwarePlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class CacheAwarePlacementAttribute() : PlacementAttribute(CacheAwarePlacement.Instance);

/// <summary>
/// Orleans' placement director for <see cref="CacheAwarePlacement"/>. A migration's target (Orleans' placement hint)
/// wins; then the caller's <see cref="PlacementHint"/>; then the load rule of <see cref="SiloLoads.Choose"/>.
/// </summary>
internal sealed class CacheAwarePlacementDirector(SiloLoads loads) : IPlacementDirector
{
    public async Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var candidates = context.GetCompatibleSilos(target);
        if (IPlacementDirector.GetPlacementHint(target.RequestContextData, candidates) is { } migrationTarget)
        {
            return migrationTarget;
        }

        var hint = target.RequestContextData is { } data && data.TryGetValue(PlacementHint.RequestContextKey, out var value) ? value as string : null;
        if (hint is null && candidates.Length > 1)
        {
            // Other silos may have taken sessions since the last round: placing is rare enough to read afresh.
            await loads.RefreshAsync(CancellationToken.None);
        }

        return loads.Place(candidates, hint);
    }
}

/// <summary>
/// A caller's wish for where a new session goes: the gateway copies the <see cref="Header"/> metadata entry (a silo
/// name, its <c>host:port</c> silo endpoint or its address) into Orleans' request context for the call.
/// </summary>
public static class PlacementHint
{
    public const string Header = "x-kvcache-placement-hint";

    public const string RequestContextKey = "kvcache.placement-hint";
}
