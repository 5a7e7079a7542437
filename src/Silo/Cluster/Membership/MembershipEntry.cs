namespace KvCache.Silo.Cluster.Membership;

/// <summary>A silo's life cycle as the membership table records it (Orleans' SiloStatus, reduced).</summary>
public enum SiloStatus
{
    /// <summary>Not in the table.</summary>
    None,

    /// <summary>Starting: in the table, not yet serving.</summary>
    Joining,

    /// <summary>Serving.</summary>
    Active,

    /// <summary>Leaving on purpose (drain); never a placement target.</summary>
    ShuttingDown,

    /// <summary>Gone: left, or declared dead when its lease lapsed. Terminal: a dead silo never comes back.</summary>
    Dead,
}

/// <summary>One row of the membership table (Orleans' MembershipEntry, reduced).</summary>
/// <param name="IAmAliveTime">The silo's last heartbeat; its lease runs from here.</param>
public sealed record MembershipEntry(
    SiloAddress SiloAddress,
    SiloStatus Status,
    string SiloName,
    DateTimeOffset StartTime,
    DateTimeOffset IAmAliveTime)
{
    /// <summary>
    /// Whether the silo may still own activations: not dead and its lease not lapsed. Silos and gateways apply
    /// the same rule, so a gateway waits exactly as long as a silo before a takeover.
    /// </summary>
    public bool IsLive(DateTimeOffset now, TimeSpan leaseDuration) =>
        Status is (SiloStatus.Joining or SiloStatus.Active or SiloStatus.ShuttingDown) && now - IAmAliveTime <= leaseDuration;
}

/// <summary>
/// The table's version (Orleans' TableVersion): every row insert or update must name the version it read
/// (<see cref="VersionEtag"/>) and bumps it, so writers that act on an outdated view of the cluster fail.
/// </summary>
public sealed record TableVersion(int Version, string VersionEtag)
{
    /// <summary>The version to write after reading this one (same etag: the one the write compares with).</summary>
    public TableVersion Next() => this with { Version = Version + 1 };
}

/// <summary>A consistent read of the whole table: every row with its etag, and the table version.</summary>
public sealed record MembershipTableData(IReadOnlyList<(MembershipEntry Entry, string ETag)> Members, TableVersion Version)
{
    public (MembershipEntry Entry, string ETag)? Find(SiloAddress silo)
    {
        foreach (var member in Members)
        {
            if (member.Entry.SiloAddress == silo)
            {
                return member;
            }
        }

        return null;
    }
}
