using System.Text.Json;
using StackExchange.Redis;

namespace KvCache.Silo.Placement;

/// <summary>
/// The silos' loads in one Redis hash (<c>{prefix}:silo-loads</c>, a field per silo address), refreshed by each silo
/// every few hundred milliseconds and read whole by every silo.
/// </summary>
public sealed class RedisSiloLoadTable(IConnectionMultiplexer redis, string keyPrefix) : ISiloLoadTable
{
    private readonly RedisKey _key = $"{keyPrefix}:silo-loads";

    public async Task PublishAsync(SiloLoad load, CancellationToken cancellationToken) =>
        await redis.GetDatabase().HashSetAsync(_key, load.Address.ToParsableString(), JsonSerializer.Serialize(Entry.From(load)));

    public async Task<IReadOnlyList<SiloLoad>> ReadAllAsync(CancellationToken cancellationToken)
    {
        var fields = await redis.GetDatabase().HashGetAllAsync(_key);
        var loads = new List<SiloLoad>(fields.Length);
        foreach (var field in fields)
        {
            // A field another version wrote, or garbage, is skipped: placement works with the loads it can read.
            if (TryRead(field, out var load))
            {
                loads.Add(load);
            }
        }

        return loads;
    }

    public async Task RemoveAsync(SiloAddress silo, CancellationToken cancellationToken) =>
        await redis.GetDatabase().HashDeleteAsync(_key, silo.ToParsableString());

    private static bool TryRead(HashEntry field, out SiloLoad load)
    {
        load = null!;
        if (!SiloAddress.TryParse((string?)field.Name, out var address))
        {
            return false;
        }

        try
        {
            if (JsonSerializer.Deserialize<Entry>((string)field.Value!) is not { } entry)
            {
                return false;
            }

            load = entry.ToLoad(address);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private sealed record Entry(string Name, int ActiveSessions, long CacheBytesFree, long CacheBytesTotal, bool Draining, DateTimeOffset PublishedAt)
    {
        public static Entry From(SiloLoad load) =>
            new(load.Name, load.ActiveSessions, load.CacheBytesFree, load.CacheBytesTotal, load.Draining, load.PublishedAt);

        public SiloLoad ToLoad(SiloAddress address) =>
            new(address, Name, ActiveSessions, CacheBytesFree, CacheBytesTotal, Draining, PublishedAt);
    }
}
