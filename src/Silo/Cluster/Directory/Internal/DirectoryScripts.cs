using KvCache.Silo.Storage.Redis;

namespace KvCache.Silo.Cluster.Directory.Internal;

/// <summary>
/// A grain's entry is the hash <c>{prefix}:{tenant/session}:dir</c> (silo, act, epoch) beside a counter
/// <c>…:epoch</c> that is never deleted, so epochs are never reused. Both share the session's hash tag with
/// its spill-store keys, so the store's scripts read the entry's epoch in the same atomic step as a write.
/// </summary>
internal static class DirectoryScripts
{
    /// <summary>
    /// KEYS: dir, epoch counter. ARGV: silo, activation, previous activation ('' for none). Registers if there
    /// is no entry or its activation is the previous one; returns the entry now registered [silo, act, epoch].
    /// </summary>
    public static readonly RedisScript Register = new("""
        local cur = redis.call('HMGET', KEYS[1], 'silo', 'act', 'epoch')
        if cur[2] and (cur[2] == ARGV[2] or cur[2] ~= ARGV[3]) then return cur end
        local e = redis.call('INCR', KEYS[2])
        redis.call('HSET', KEYS[1], 'silo', ARGV[1], 'act', ARGV[2], 'epoch', e)
        return {ARGV[1], ARGV[2], tostring(e)}
        """);

    /// <summary>KEYS: dir. ARGV: activation. Deletes the entry if it is that activation's; returns 1 if so.</summary>
    public static readonly RedisScript Unregister = new("""
        if redis.call('HGET', KEYS[1], 'act') ~= ARGV[1] then return 0 end
        redis.call('DEL', KEYS[1])
        return 1
        """);
}
