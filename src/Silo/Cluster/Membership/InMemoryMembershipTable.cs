using System.Globalization;

namespace KvCache.Silo.Cluster.Membership;

/// <summary>The membership table in process memory: for one process hosting several silos (tests, embedded).</summary>
public sealed class InMemoryMembershipTable : IMembershipTable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<SiloAddress, (MembershipEntry Entry, string ETag)> _rows = [];
    private TableVersion _version = new(0, "0");

    public ValueTask<MembershipTableData> ReadAllAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            return ValueTask.FromResult(new MembershipTableData([.. _rows.Values], _version));
        }
    }

    public ValueTask<bool> InsertRowAsync(MembershipEntry entry, TableVersion tableVersion, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(tableVersion);
        lock (_lock)
        {
            if (!IsNextVersion(tableVersion) || _rows.ContainsKey(entry.SiloAddress))
            {
                return ValueTask.FromResult(false);
            }

            Write(entry, tableVersion);
            return ValueTask.FromResult(true);
        }
    }

    public ValueTask<bool> UpdateRowAsync(MembershipEntry entry, string etag, TableVersion tableVersion, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(tableVersion);
        lock (_lock)
        {
            if (!IsNextVersion(tableVersion)
                || !_rows.TryGetValue(entry.SiloAddress, out var row)
                || row.ETag != etag)
            {
                return ValueTask.FromResult(false);
            }

            Write(entry, tableVersion);
            return ValueTask.FromResult(true);
        }
    }

    public ValueTask UpdateIAmAliveAsync(MembershipEntry entry, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entry);
        lock (_lock)
        {
            if (_rows.TryGetValue(entry.SiloAddress, out var row))
            {
                _rows[entry.SiloAddress] = (row.Entry with { IAmAliveTime = entry.IAmAliveTime }, row.ETag);
            }
        }

        return ValueTask.CompletedTask;
    }

    // An etag is reused only if the version does not grow: refuse that, as the Redis table does.
    private bool IsNextVersion(TableVersion tableVersion) =>
        tableVersion.VersionEtag == _version.VersionEtag && tableVersion.Version > _version.Version;

    // Like the Redis table: the new table etag is the new version number, and a row's etag the version that wrote it.
    private void Write(MembershipEntry entry, TableVersion tableVersion)
    {
        string etag = tableVersion.Version.ToString(CultureInfo.InvariantCulture);
        _version = new TableVersion(tableVersion.Version, etag);
        _rows[entry.SiloAddress] = (entry, etag);
    }
}
