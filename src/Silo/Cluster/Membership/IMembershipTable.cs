namespace KvCache.Silo.Cluster.Membership;

/// <summary>
/// The cluster's membership table, shaped like Orleans' IMembershipTable so an Orleans provider can take its
/// place: a versioned set of rows, written only by compare-and-swap on the table version (and a row's etag).
/// </summary>
/// <remarks>
/// Etags are opaque strings. A write that loses a race returns false; the caller reads again and retries.
/// </remarks>
public interface IMembershipTable
{
    /// <summary>Every row and the table version, read atomically.</summary>
    ValueTask<MembershipTableData> ReadAllAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Adds the row if the silo has none and the table's etag still is <paramref name="tableVersion"/>'s
    /// (<see cref="TableVersion.Next"/> of the version read); the table then is at tableVersion.Version.
    /// </summary>
    ValueTask<bool> InsertRowAsync(MembershipEntry entry, TableVersion tableVersion, CancellationToken cancellationToken = default);

    /// <summary>Replaces the silo's row if its etag is <paramref name="etag"/> and the table's is tableVersion's.</summary>
    ValueTask<bool> UpdateRowAsync(MembershipEntry entry, string etag, TableVersion tableVersion, CancellationToken cancellationToken = default);

    /// <summary>
    /// Heartbeat: sets only the row's <see cref="MembershipEntry.IAmAliveTime"/>, without a version change (it
    /// never revives a dead row). No effect if the silo has no row.
    /// </summary>
    ValueTask UpdateIAmAliveAsync(MembershipEntry entry, CancellationToken cancellationToken = default);
}
