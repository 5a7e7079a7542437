namespace KvCache.Silo.Cluster.Membership;

/// <summary>
/// What a silo knows of the cluster when it decides whether to take a session over (Orleans' ISiloStatusOracle,
/// reduced): its own address and whether another silo may still own activations.
/// </summary>
public interface ISiloStatusOracle
{
    /// <summary>This silo: the address its directory entries carry.</summary>
    SiloAddress SiloAddress { get; }

    /// <summary>
    /// Whether <paramref name="silo"/> may still own activations (see <see cref="MembershipEntry.IsLive"/>);
    /// read fresh, since a wrong "dead" answer costs a needless takeover.
    /// </summary>
    ValueTask<bool> IsLiveAsync(SiloAddress silo, CancellationToken cancellationToken);
}
