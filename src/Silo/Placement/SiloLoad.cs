namespace KvCache.Silo.Placement;

/// <summary>
/// One silo's load as it publishes it: what placement, migration and the operator API compare silos by. Orleans has
/// no public way to carry a custom per-silo figure such as free cache memory, so silos publish it themselves.
/// </summary>
/// <param name="Address">The silo's Orleans address.</param>
/// <param name="Name">The silo's name (<c>Silo:SiloName</c>), which session owners are reported by.</param>
/// <param name="ActiveSessions">Sessions whose caches the silo holds in memory.</param>
/// <param name="Draining">The silo is moving its sessions off before it stops: no new ones go there.</param>
[GenerateSerializer, Immutable]
public sealed record SiloLoad(
    SiloAddress Address,
    string Name,
    int ActiveSessions,
    long CacheBytesFree,
    long CacheBytesTotal,
    bool Draining,
    DateTimeOffset PublishedAt);

/// <summary>Where the cluster's silos publish their <see cref="SiloLoad"/>: a Redis hash, or memory in one process.</summary>
public interface ISiloLoadTable
{
    Task PublishAsync(SiloLoad load, CancellationToken cancellationToken);

    Task<IReadOnlyList<SiloLoad>> ReadAllAsync(CancellationToken cancellationToken);

    Task RemoveAsync(SiloAddress silo, CancellationToken cancellationToken);
}
