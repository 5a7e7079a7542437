using System.Globalization;
using KvCache.Silo.Cluster.Membership.Internal;
using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Cluster.Membership;

/// <summary>
/// <see cref="IMembershipTable"/> on Redis: one hash per cluster, every write one Lua script that compares the
/// table etag (and the row's) before it writes. Layout in <see cref="MembershipScripts"/>.
/// </summary>
public sealed class RedisMembershipTable : IMembershipTable, IAsyncDisposable
{
    private readonly RedisClient _client;
    private readonly string _key;

    public RedisMembershipTable(IOptions<RedisMembershipOptions> options, ILogger<RedisClient>? logger = null)
    {
        var o = options.Value;
        o.Validate();
        _client = new RedisClient(o, logger);
        _key = $"{o.KeyPrefix}:cluster:{{{o.ClusterId}}}:members";
    }

    public async ValueTask<MembershipTableData> ReadAllAsync(CancellationToken cancellationToken = default)
    {
        var fields = (await _client.ExecuteAsync(["HGETALL", _key], cancellationToken).ConfigureAwait(false)).AsArray();
        string version = "0";
        var rows = new Dictionary<string, string>(StringComparer.Ordinal);
        var alive = new Dictionary<string, long>(StringComparer.Ordinal);
        for (int i = 0; i + 1 < fields.Count; i += 2)
        {
            string field = fields[i].AsString()!;
            string value = fields[i + 1].AsString()!;
            if (field == "version")
            {
                version = value;
            }
            else if (field.StartsWith("row:", StringComparison.Ordinal))
            {
                rows[field[4..]] = value;
            }
            else if (field.StartsWith("alive:", StringComparison.Ordinal))
            {
                alive[field[6..]] = long.Parse(value, CultureInfo.InvariantCulture);
            }
        }

        var members = new List<(MembershipEntry, string)>(rows.Count);
        foreach (var (silo, row) in rows)
        {
            // etag|status|start ticks|name; the name is last, so it may hold '|'.
            string[] parts = row.Split('|', 4);
            var entry = new MembershipEntry(
                SiloAddress.Parse(silo),
                Enum.Parse<SiloStatus>(parts[1]),
                parts[3],
                new DateTimeOffset(long.Parse(parts[2], CultureInfo.InvariantCulture), TimeSpan.Zero),
                new DateTimeOffset(alive[silo], TimeSpan.Zero));
            members.Add((entry, parts[0]));
        }

        return new MembershipTableData(members, new TableVersion(int.Parse(version, CultureInfo.InvariantCulture), version));
    }

    public async ValueTask<bool> InsertRowAsync(MembershipEntry entry, TableVersion tableVersion, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(tableVersion);
        var reply = await _client.EvalAsync(
            MembershipScripts.Insert,
            [_key],
            [tableVersion.VersionEtag, tableVersion.Version, entry.SiloAddress.ToString(), Row(entry), entry.IAmAliveTime.UtcTicks],
            cancellationToken).ConfigureAwait(false);
        return reply.AsInt64() == 1;
    }

    public async ValueTask<bool> UpdateRowAsync(MembershipEntry entry, string etag, TableVersion tableVersion, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(etag);
        ArgumentNullException.ThrowIfNull(tableVersion);
        var reply = await _client.EvalAsync(
            MembershipScripts.Update,
            [_key],
            [tableVersion.VersionEtag, tableVersion.Version, entry.SiloAddress.ToString(), Row(entry), entry.IAmAliveTime.UtcTicks, etag],
            cancellationToken).ConfigureAwait(false);
        return reply.AsInt64() == 1;
    }

    public async ValueTask UpdateIAmAliveAsync(MembershipEntry entry, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entry);
        await _client.EvalAsync(MembershipScripts.IAmAlive, [_key], [entry.SiloAddress.ToString(), entry.IAmAliveTime.UtcTicks], cancellationToken).ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => _client.DisposeAsync();

    private static string Row(MembershipEntry entry) =>
        string.Create(CultureInfo.InvariantCulture, $"{entry.Status}|{entry.StartTime.UtcTicks}|{entry.SiloName}");
}
