using KvCache.Silo.Storage.Redis;

namespace KvCache.Silo.Cluster.Membership.Internal;

/// <summary>
/// The membership table is one Redis hash (so HGETALL reads it atomically): field <c>version</c> (the table
/// version, which is also its etag), <c>row:{silo}</c> = <c>etag|status|start ticks|name</c> and
/// <c>alive:{silo}</c> = last heartbeat in UTC ticks (apart, so a heartbeat changes no etag).
/// </summary>
internal static class MembershipScripts
{
    /// <summary>
    /// KEYS: table. ARGV: expected table etag, new version, silo, row without etag, alive ticks. Returns 1 if
    /// inserted; 0 if the etag differs, the version does not grow, or the silo has a row.
    /// </summary>
    public static readonly RedisScript Insert = new("""
        local v = redis.call('HGET', KEYS[1], 'version') or '0'
        if v ~= ARGV[1] or tonumber(ARGV[2]) <= tonumber(v) then return 0 end
        if redis.call('HEXISTS', KEYS[1], 'row:' .. ARGV[3]) == 1 then return 0 end
        redis.call('HSET', KEYS[1], 'version', ARGV[2], 'row:' .. ARGV[3], ARGV[2] .. '|' .. ARGV[4], 'alive:' .. ARGV[3], ARGV[5])
        return 1
        """);

    /// <summary>
    /// KEYS: table. ARGV: expected table etag, new version, silo, row without etag, alive ticks, expected row
    /// etag. Returns 1 if updated; 0 if an etag differs, the version does not grow, or the silo has no row.
    /// </summary>
    public static readonly RedisScript Update = new("""
        local v = redis.call('HGET', KEYS[1], 'version') or '0'
        if v ~= ARGV[1] or tonumber(ARGV[2]) <= tonumber(v) then return 0 end
        local row = redis.call('HGET', KEYS[1], 'row:' .. ARGV[3])
        if not row or string.sub(row, 1, string.find(row, '|', 1, true) - 1) ~= ARGV[6] then return 0 end
        redis.call('HSET', KEYS[1], 'version', ARGV[2], 'row:' .. ARGV[3], ARGV[2] .. '|' .. ARGV[4], 'alive:' .. ARGV[3], ARGV[5])
        return 1
        """);

    /// <summary>KEYS: table. ARGV: silo, alive ticks. Sets the heartbeat only if the silo has a row.</summary>
    public static readonly RedisScript IAmAlive = new("""
        if redis.call('HEXISTS', KEYS[1], 'row:' .. ARGV[1]) == 0 then return 0 end
        redis.call('HSET', KEYS[1], 'alive:' .. ARGV[1], ARGV[2])
        return 1
        """);
}
