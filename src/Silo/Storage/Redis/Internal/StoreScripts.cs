using StackExchange.Redis;

namespace KvCache.Silo.Storage.Redis.Internal;

/// <summary>
/// The Lua scripts that make each store operation atomic, with StackExchange.Redis' named parameters: those
/// passed as <see cref="RedisKey"/> become KEYS, the rest ARGV; each runs by its SHA once the server has it and
/// is sent again if the server lost it (restart, SCRIPT FLUSH). Every script first checks that the session's
/// meta hash exists, so nothing is written for a session that does not exist (or was deleted). The writes then
/// check the fence: an <c>@epoch</c> other than '0' must equal the session's epoch counter (the <c>epoch</c> key,
/// in the same hash tag; see <see cref="SessionKeys.Epoch"/>), else they return -2 having written nothing.
/// </summary>
internal static class StoreScripts
{
    /// <summary>Keys: meta, index (the tenant's). Args: model, codec, created (ticks), session (id). Returns 1 if created.</summary>
    public static readonly LuaScript Create = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 1 then return 0 end
        redis.call('HSET', @meta, 'model', @model, 'codec', @codec, 'created', @created)
        redis.call('ZADD', @index, 0, @session)
        return 1
        """);

    /// <summary>
    /// Keys: meta, tokens, snap, chunks, reqs, index. Args: session (id), chunkPrefix. Removes everything but the
    /// epoch counter, even if meta is gone; returns 1 if meta existed.
    /// </summary>
    public static readonly LuaScript Delete = LuaScript.Prepare("""
        local existed = redis.call('EXISTS', @meta)
        for _, m in ipairs(redis.call('SMEMBERS', @chunks)) do redis.call('DEL', @chunkPrefix .. m) end
        redis.call('DEL', @meta, @tokens, @snap, @chunks, @reqs)
        redis.call('ZREM', @index, @session)
        return existed
        """);

    /// <summary>
    /// Keys: meta, tokens. Returns [model, codec, created, resident (nil if none), token log length in bytes],
    /// or nil if the session does not exist.
    /// </summary>
    public static readonly LuaScript GetState = LuaScript.Prepare("""
        local state = redis.call('HMGET', @meta, 'model', 'codec', 'created', 'resident')
        if not state[1] then return false end
        state[5] = redis.call('STRLEN', @tokens)
        return state
        """);

    /// <summary>Keys: meta, tokens. Returns the log's length in bytes, or -1 if the session does not exist.</summary>
    public static readonly LuaScript Length = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return -1 end
        return redis.call('STRLEN', @tokens)
        """);

    /// <summary>
    /// Keys: meta, tokens. Args: first, last (byte offsets, inclusive, last &gt;= first &gt;= 0). Returns those bytes
    /// of the log (fewer at its end), or -1 if the session does not exist.
    /// </summary>
    public static readonly LuaScript ReadTokens = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return -1 end
        return redis.call('GETRANGE', @tokens, @first, @last)
        """);

    /// <summary>
    /// Keys: meta, tokens, reqs, epochCounter. Args: expected (length in bytes), data (bytes to append), writer (the
    /// writing Decode's request id, '' for none), append (the writing Append's request id, '' for none), result (its
    /// result), epoch. Appends only at the expected length, and with it: the Append's result as reqs field
    /// 'a:'..append; the writer as meta's 'writer' field, and, when the writer changes, where the previous writer's
    /// tokens end (in bytes) as reqs field 'e:'..previous. Returns the length before (the append happened iff it
    /// equals the expected one), -1 if no session, -2 if the epoch is stale.
    /// </summary>
    public static readonly LuaScript Append = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return -1 end
        if @epoch ~= '0' and redis.call('GET', @epochCounter) ~= @epoch then return -2 end
        local n = redis.call('STRLEN', @tokens)
        if n ~= tonumber(@expected) then return n end
        redis.call('APPEND', @tokens, @data)
        local previous = redis.call('HGET', @meta, 'writer') or ''
        if previous ~= @writer then
          if previous ~= '' then redis.call('HSET', @reqs, 'e:' .. previous, n) end
          if @writer == '' then redis.call('HDEL', @meta, 'writer') else redis.call('HSET', @meta, 'writer', @writer) end
        end
        if @append ~= '' then redis.call('HSET', @reqs, 'a:' .. @append, @result) end
        return n
        """);

    /// <summary>
    /// Keys: meta, chunks, epochCounter. Args: member ("id:index"), epoch. Returns 1, or 0 if the session does not
    /// exist, -2 if the epoch is stale.
    /// </summary>
    public static readonly LuaScript TrackChunk = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return 0 end
        if @epoch ~= '0' and redis.call('GET', @epochCounter) ~= @epoch then return -2 end
        redis.call('SADD', @chunks, @member)
        return 1
        """);

    /// <summary>
    /// Keys: meta, snap, chunks, epochCounter. Args: id, header, chunkPrefix, epoch. Makes the snapshot's chunks
    /// permanent, deletes every other snapshot's chunks and records the header; returns 1, 0 if no session, -2 if
    /// the epoch is stale.
    /// </summary>
    public static readonly LuaScript Commit = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return 0 end
        if @epoch ~= '0' and redis.call('GET', @epochCounter) ~= @epoch then return -2 end
        local own = @id .. ':'
        for _, m in ipairs(redis.call('SMEMBERS', @chunks)) do
          if string.sub(m, 1, #own) == own then
            redis.call('PERSIST', @chunkPrefix .. m)
          else
            redis.call('DEL', @chunkPrefix .. m)
            redis.call('SREM', @chunks, m)
          end
        end
        redis.call('HSET', @snap, 'id', @id, 'header', @header)
        return 1
        """);

    /// <summary>Keys: meta, snap. Returns -1 if no session, else [id, header] (nils if no snapshot).</summary>
    public static readonly LuaScript GetSnapshot = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return -1 end
        return redis.call('HMGET', @snap, 'id', 'header')
        """);

    /// <summary>Keys: meta, reqs. Args: field. Returns the field's value (nil if none), or -1 if no session.</summary>
    public static readonly LuaScript GetAppendRequest = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return -1 end
        return redis.call('HGET', @reqs, @field)
        """);

    /// <summary>
    /// Keys: meta, tokens, reqs, epochCounter. Args: request (id), recorded ("start:fingerprint"), epoch. A new request
    /// is recorded and becomes meta's 'writer' (the previous writer's tokens end here, as in <see cref="Append"/>).
    /// Returns [recorded ("start" or "start:fingerprint"), where its tokens end in bytes (false while it is the
    /// writer, or never ended), 1 if it is the writer else 0], or -1 if no session, -2 if the epoch is stale.
    /// </summary>
    public static readonly LuaScript GetOrAddRequest = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return -1 end
        if @epoch ~= '0' and redis.call('GET', @epochCounter) ~= @epoch then return -2 end
        local recorded = redis.call('HGET', @reqs, @request)
        local writer = redis.call('HGET', @meta, 'writer') or ''
        if not recorded then
          recorded = @recorded
          redis.call('HSET', @reqs, @request, recorded)
          if writer ~= '' then redis.call('HSET', @reqs, 'e:' .. writer, redis.call('STRLEN', @tokens)) end
          redis.call('HSET', @meta, 'writer', @request)
          writer = @request
        end
        if writer == @request then return {recorded, false, 1} end
        return {recorded, redis.call('HGET', @reqs, 'e:' .. @request), 0}
        """);

    /// <summary>
    /// Keys: srcMeta, srcTokens, srcSnap, srcChunks (the source's), meta, tokens, snap, chunks, index, epochCounter (the
    /// fork's). Args: length (bytes of the log to copy), snapshot (id to copy if still committed, '' for none),
    /// srcChunkPrefix, chunkPrefix, created (ticks), session (the fork's id), epoch (the fork's). Makes the fork: the
    /// source's model and codec, its log's first length bytes, and the snapshot's header and chunks (COPY, server-side).
    /// Returns {1, 1 if the snapshot was copied else 0, model, codec}, {0} if the fork exists, {-1} if the source does not, {-2} if the
    /// epoch is stale, {-3, the source log's length in bytes} if that is shorter than length.
    /// </summary>
    public static readonly LuaScript Fork = LuaScript.Prepare("""
        if redis.call('EXISTS', @srcMeta) == 0 then return {-1} end
        if @epoch ~= '0' and redis.call('GET', @epochCounter) ~= @epoch then return {-2} end
        if redis.call('EXISTS', @meta) == 1 then return {0} end
        local n = redis.call('STRLEN', @srcTokens)
        local length = tonumber(@length)
        if n < length then return {-3, n} end
        local record = redis.call('HMGET', @srcMeta, 'model', 'codec')
        redis.call('HSET', @meta, 'model', record[1], 'codec', record[2], 'created', @created)
        redis.call('ZADD', @index, 0, @session)
        if length > 0 then
          redis.call('SET', @tokens, redis.call('GETRANGE', @srcTokens, 0, length - 1))
        else
          redis.call('DEL', @tokens)
        end
        if @snapshot == '' or redis.call('HGET', @srcSnap, 'id') ~= @snapshot then return {1, 0, record[1], record[2]} end
        local own = @snapshot .. ':'
        for _, m in ipairs(redis.call('SMEMBERS', @srcChunks)) do
          if string.sub(m, 1, #own) == own then
            redis.call('COPY', @srcChunkPrefix .. m, @chunkPrefix .. m, 'REPLACE')
            redis.call('SADD', @chunks, m)
          end
        end
        redis.call('HSET', @snap, 'id', @snapshot, 'header', redis.call('HGET', @srcSnap, 'header'))
        return {1, 1, record[1], record[2]}
        """);

    /// <summary>
    /// Keys: meta, epochCounter. Args: silo ('' for none), epoch (never '0': fenced only). Sets or clears meta's
    /// resident field; returns 1, -1 if no session, -2 if the epoch is stale.
    /// </summary>
    public static readonly LuaScript SetResident = LuaScript.Prepare("""
        if redis.call('EXISTS', @meta) == 0 then return -1 end
        if redis.call('GET', @epochCounter) ~= @epoch then return -2 end
        if @silo == '' then redis.call('HDEL', @meta, 'resident') else redis.call('HSET', @meta, 'resident', @silo) end
        return 1
        """);
}
