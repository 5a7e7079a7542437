namespace KvCache.Silo.Storage.Redis.Internal;

/// <summary>
/// The Lua scripts that make each store operation atomic. Every script first checks that the session's meta
/// hash exists, so nothing is written for a session that does not exist (or was deleted). The writes then
/// check the fence: an epoch argument other than '0' must equal the epoch of the session's directory entry
/// (the <c>dir</c> hash, in the same hash tag), else they return -2 having written nothing.
/// </summary>
internal static class StoreScripts
{
    /// <summary>KEYS: meta, tenant index. ARGV: model, codec, created ticks, session id. Returns 1 if created.</summary>
    public static readonly RedisScript Create = new("""
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        redis.call('HSET', KEYS[1], 'model', ARGV[1], 'codec', ARGV[2], 'created', ARGV[3])
        redis.call('ZADD', KEYS[2], 0, ARGV[4])
        return 1
        """);

    /// <summary>
    /// KEYS: meta, tokens, snap, chunks, reqs, tenant index. ARGV: session id, chunk key prefix.
    /// Removes everything even if meta is gone; returns 1 if meta existed.
    /// </summary>
    public static readonly RedisScript Delete = new("""
        local existed = redis.call('EXISTS', KEYS[1])
        for _, m in ipairs(redis.call('SMEMBERS', KEYS[4])) do redis.call('DEL', ARGV[2] .. m) end
        redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
        redis.call('ZREM', KEYS[6], ARGV[1])
        return existed
        """);

    /// <summary>KEYS: meta, tokens. Returns the log's length in bytes, or -1 if the session does not exist.</summary>
    public static readonly RedisScript Length = new("""
        if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
        return redis.call('STRLEN', KEYS[2])
        """);

    /// <summary>
    /// KEYS: meta, tokens, dir. ARGV: expected length in bytes, bytes to append, epoch. Appends only at the
    /// expected length; returns the length before (the append happened iff it equals the expected one), -1 if
    /// no session, -2 if the epoch is stale.
    /// </summary>
    public static readonly RedisScript Append = new("""
        if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
        if ARGV[3] ~= '0' and redis.call('HGET', KEYS[3], 'epoch') ~= ARGV[3] then return -2 end
        local n = redis.call('STRLEN', KEYS[2])
        if n == tonumber(ARGV[1]) then redis.call('APPEND', KEYS[2], ARGV[2]) end
        return n
        """);

    /// <summary>
    /// KEYS: meta, chunks, dir. ARGV: chunk member "id:index", epoch. Returns 1, or 0 if the session does not
    /// exist, -2 if the epoch is stale.
    /// </summary>
    public static readonly RedisScript TrackChunk = new("""
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        if ARGV[2] ~= '0' and redis.call('HGET', KEYS[3], 'epoch') ~= ARGV[2] then return -2 end
        redis.call('SADD', KEYS[2], ARGV[1])
        return 1
        """);

    /// <summary>
    /// KEYS: meta, snap, chunks, dir. ARGV: snapshot id, header, chunk key prefix, epoch. Makes the snapshot's
    /// chunks permanent, deletes every other snapshot's chunks and records the header; returns 1, 0 if no
    /// session, -2 if the epoch is stale.
    /// </summary>
    public static readonly RedisScript Commit = new("""
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        if ARGV[4] ~= '0' and redis.call('HGET', KEYS[4], 'epoch') ~= ARGV[4] then return -2 end
        local own = ARGV[1] .. ':'
        for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
          if string.sub(m, 1, #own) == own then
            redis.call('PERSIST', ARGV[3] .. m)
          else
            redis.call('DEL', ARGV[3] .. m)
            redis.call('SREM', KEYS[3], m)
          end
        end
        redis.call('HSET', KEYS[2], 'id', ARGV[1], 'header', ARGV[2])
        return 1
        """);

    /// <summary>KEYS: meta, snap. Returns -1 if no session, else [id, header] (nils if no snapshot).</summary>
    public static readonly RedisScript GetSnapshot = new("""
        if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
        return redis.call('HMGET', KEYS[2], 'id', 'header')
        """);

    /// <summary>
    /// KEYS: meta, reqs, dir. ARGV: request id, start, epoch. Returns the recorded start, or -1 if no session,
    /// -2 if the epoch is stale.
    /// </summary>
    public static readonly RedisScript GetOrAddRequest = new("""
        if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
        if ARGV[3] ~= '0' and redis.call('HGET', KEYS[3], 'epoch') ~= ARGV[3] then return -2 end
        redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
        return redis.call('HGET', KEYS[2], ARGV[1])
        """);
}
