using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Storage.Internal;
using KvCache.Silo.Storage.Redis.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Storage.Redis;

/// <summary>
/// <see cref="ISessionStore"/> on Redis (standalone server): each operation is one command or one Lua script,
/// so it is atomic; snapshot chunks move as plain SET/GET through the pipelined client. Key layout in
/// <see cref="SessionKeys"/>. Fenced writes check the epoch of the <see cref="RedisGrainDirectory"/> entry in
/// the same script.
/// </summary>
public sealed class RedisSessionStore : ISessionStore, IAsyncDisposable
{
    // Epochs start at 1: 0 marks an unfenced write (the scripts skip the check).
    private const long Unfenced = 0;
    private const long StaleEpoch = -2;

    private readonly RedisClient _client;
    private readonly string _prefix;
    private readonly long _chunkTtlMs;

    public RedisSessionStore(IOptions<RedisStoreOptions> options, ILogger<RedisClient>? logger = null)
    {
        var o = options.Value;
        o.Validate();
        _client = new RedisClient(o, logger);
        _prefix = o.KeyPrefix;
        _chunkTtlMs = (long)o.UncommittedChunkTtl.TotalMilliseconds;
        Directory = new RedisGrainDirectory(_client, _prefix);
    }

    public IGrainDirectory Directory { get; }

    public async ValueTask<bool> TryCreateAsync(SessionRecord record, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateRecord(record);
        var k = Keys(record.Key);
        var reply = await _client.EvalAsync(
            StoreScripts.Create,
            [k.Meta, k.TenantIndex],
            [record.Model, record.Codec, record.CreatedAt.UtcTicks, record.Key.SessionId],
            cancellationToken).ConfigureAwait(false);
        return reply.AsInt64() == 1;
    }

    public async ValueTask<SessionRecord?> GetAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        return await GetRecordAsync(key, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<bool> DeleteAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        var k = Keys(key);
        var reply = await _client.EvalAsync(
            StoreScripts.Delete,
            [k.Meta, k.Tokens, k.Snapshot, k.Chunks, k.Requests, k.TenantIndex],
            [key.SessionId, k.ChunkPrefix],
            cancellationToken).ConfigureAwait(false);
        return reply.AsInt64() == 1;
    }

    public async ValueTask<SessionPage> ListAsync(string tenant, string? pageToken, int pageSize, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidatePage(tenant, pageToken, pageSize);
        var ids = (await _client.ExecuteAsync(
            ["ZRANGEBYLEX", SessionKeys.TenantIndexKey(_prefix, tenant), pageToken is null ? "-" : "(" + pageToken, "+", "LIMIT", 0, pageSize + 1],
            cancellationToken).ConfigureAwait(false)).AsArray();
        int count = Math.Min(pageSize, ids.Count);

        // One round trip for the page: every HMGET is in flight at once.
        var lookups = new ValueTask<SessionRecord?>[count];
        for (int i = 0; i < count; i++)
        {
            lookups[i] = GetRecordAsync(new SessionKey(tenant, ids[i].AsString()!), cancellationToken);
        }

        var sessions = new List<SessionRecord>(count);
        foreach (var lookup in lookups)
        {
            // A session deleted since the index was read is left out.
            if (await lookup.ConfigureAwait(false) is { } record)
            {
                sessions.Add(record);
            }
        }

        return new SessionPage(sessions, ids.Count > pageSize ? ids[count - 1].AsString() : null);
    }

    public async ValueTask<long> GetTokenCountAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        var k = Keys(key);
        long bytes = (await _client.EvalAsync(StoreScripts.Length, [k.Meta, k.Tokens], [], cancellationToken).ConfigureAwait(false)).AsInt64();
        return bytes < 0 ? throw new SessionNotFoundException(key) : bytes / sizeof(int);
    }

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, CancellationToken cancellationToken = default) =>
        AppendTokensCore(key, expectedCount, tokens, Unfenced, cancellationToken);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, long epoch, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        return AppendTokensCore(key, expectedCount, tokens, epoch, cancellationToken);
    }

    private async ValueTask AppendTokensCore(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateKey(key);
        ArgumentOutOfRangeException.ThrowIfNegative(expectedCount);
        var k = Keys(key);
        byte[] bytes = ArrayPool<byte>.Shared.Rent(tokens.Length * sizeof(int));
        try
        {
            var data = bytes.AsMemory(0, tokens.Length * sizeof(int));
            WriteLittleEndian(tokens.Span, data.Span);
            long before = (await _client.EvalAsync(
                StoreScripts.Append,
                [k.Meta, k.Tokens, k.Directory],
                [expectedCount * sizeof(int), (ReadOnlyMemory<byte>)data, epoch],
                cancellationToken).ConfigureAwait(false)).AsInt64();
            if (before == StaleEpoch)
            {
                throw new StaleEpochException(key, epoch);
            }

            if (before < 0)
            {
                throw new SessionNotFoundException(key);
            }

            if (before != expectedCount * sizeof(int))
            {
                throw new TokenLogConflictException(key, expectedCount, before / sizeof(int));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    public async ValueTask<int> ReadTokensAsync(SessionKey key, long start, Memory<int> destination, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        var k = Keys(key);
        int read = 0;
        if (!destination.IsEmpty)
        {
            byte[] bytes = ArrayPool<byte>.Shared.Rent(destination.Length * sizeof(int));
            try
            {
                using var request = RedisRequest.Create("GETRANGE", k.Tokens, start * sizeof(int), (start + destination.Length) * sizeof(int) - 1);
                int n = await _client.ExecuteIntoAsync(request, bytes.AsMemory(0, destination.Length * sizeof(int)), cancellationToken).ConfigureAwait(false);
                read = Math.Max(0, n) / sizeof(int);
                ReadLittleEndian(bytes.AsSpan(0, read * sizeof(int)), destination.Span);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(bytes);
            }
        }

        // An empty read is either the log's end or a missing session: tell them apart.
        if (read == 0 && !await ExistsAsync(k, cancellationToken).ConfigureAwait(false))
        {
            throw new SessionNotFoundException(key);
        }

        return read;
    }

    public ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, CancellationToken cancellationToken = default) =>
        WriteSnapshotChunkCore(key, snapshotId, index, chunk, Unfenced, cancellationToken);

    public ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        return WriteSnapshotChunkCore(key, snapshotId, index, chunk, epoch, cancellationToken);
    }

    private async ValueTask WriteSnapshotChunkCore(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateKey(key);
        StoreArguments.ValidateChunk(index, chunk.Length);
        var k = Keys(key);
        string member = SessionKeys.ChunkMember(snapshotId, index);
        string chunkKey = k.ChunkPrefix + member;

        // Tracking and SET go out back to back (one round trip). The chunk itself is a plain SET, not a script
        // argument, so 1 MiB is not copied through Lua; its TTL removes it if the session vanished meanwhile.
        var tracked = _client.EvalAsync(StoreScripts.TrackChunk, [k.Meta, k.Chunks, k.Directory], [member, epoch], cancellationToken);
        using var set = RedisRequest.Create("SET", chunkKey, chunk, "PX", _chunkTtlMs);
        var stored = _client.ExecuteAsync(set, cancellationToken);
        long exists;
        try
        {
            exists = (await tracked.ConfigureAwait(false)).AsInt64();
        }
        finally
        {
            await stored.ConfigureAwait(false);
        }

        if (exists != 1)
        {
            // A stale writer's chunk is never tracked, so no commit can make it visible; remove it now.
            await _client.ExecuteAsync(["DEL", chunkKey], cancellationToken).ConfigureAwait(false);
            throw exists == StaleEpoch ? new StaleEpochException(key, epoch) : new SessionNotFoundException(key);
        }
    }

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, CancellationToken cancellationToken = default) =>
        CommitSnapshotCore(key, snapshotId, header, Unfenced, cancellationToken);

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        return CommitSnapshotCore(key, snapshotId, header, epoch, cancellationToken);
    }

    private async ValueTask CommitSnapshotCore(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateKey(key);
        var k = Keys(key);
        var reply = await _client.EvalAsync(
            StoreScripts.Commit,
            [k.Meta, k.Snapshot, k.Chunks, k.Directory],
            [snapshotId, header, k.ChunkPrefix, epoch],
            cancellationToken).ConfigureAwait(false);
        long result = reply.AsInt64();
        if (result != 1)
        {
            throw result == StaleEpoch ? new StaleEpochException(key, epoch) : new SessionNotFoundException(key);
        }
    }

    public async ValueTask<StoredSnapshot?> GetSnapshotAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        var k = Keys(key);
        var reply = await _client.EvalAsync(StoreScripts.GetSnapshot, [k.Meta, k.Snapshot], [], cancellationToken).ConfigureAwait(false);
        if (reply.Kind == RedisReplyKind.Integer)
        {
            throw new SessionNotFoundException(key);
        }

        var fields = reply.AsArray();
        return fields[0].IsNull || fields[1].IsNull
            ? null
            : new StoredSnapshot(long.Parse(fields[0].AsString()!, CultureInfo.InvariantCulture), fields[1].Bytes);
    }

    public async ValueTask<int> ReadSnapshotChunkAsync(SessionKey key, long snapshotId, int index, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        var k = Keys(key);
        using var request = RedisRequest.Create("GET", k.ChunkPrefix + SessionKeys.ChunkMember(snapshotId, index));
        int n = await _client.ExecuteIntoAsync(request, destination, cancellationToken).ConfigureAwait(false);
        if (n >= 0)
        {
            return n;
        }

        return await ExistsAsync(k, cancellationToken).ConfigureAwait(false)
            ? throw new SnapshotChunkNotFoundException(key, snapshotId, index)
            : throw new SessionNotFoundException(key);
    }

    public ValueTask<long> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, CancellationToken cancellationToken = default) =>
        GetOrAddDecodeRequestCore(key, requestId, startPosition, Unfenced, cancellationToken);

    public ValueTask<long> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, long epoch, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        return GetOrAddDecodeRequestCore(key, requestId, startPosition, epoch, cancellationToken);
    }

    private async ValueTask<long> GetOrAddDecodeRequestCore(SessionKey key, string requestId, long startPosition, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateKey(key);
        StoreArguments.ValidateRequestId(requestId);
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        var k = Keys(key);
        var reply = await _client.EvalAsync(StoreScripts.GetOrAddRequest, [k.Meta, k.Requests, k.Directory], [requestId, startPosition, epoch], cancellationToken).ConfigureAwait(false);
        return reply.Kind != RedisReplyKind.Integer ? long.Parse(reply.AsString()!, CultureInfo.InvariantCulture)
            : reply.Integer == StaleEpoch ? throw new StaleEpochException(key, epoch)
            : throw new SessionNotFoundException(key);
    }

    public ValueTask DisposeAsync() => _client.DisposeAsync();

    private SessionKeys Keys(SessionKey key) => new(_prefix, key);

    private async ValueTask<SessionRecord?> GetRecordAsync(SessionKey key, CancellationToken cancellationToken)
    {
        var fields = (await _client.ExecuteAsync(["HMGET", Keys(key).Meta, "model", "codec", "created"], cancellationToken).ConfigureAwait(false)).AsArray();
        if (fields[0].IsNull || fields[1].IsNull || fields[2].IsNull)
        {
            return null;
        }

        long ticks = long.Parse(fields[2].AsString()!, CultureInfo.InvariantCulture);
        return new SessionRecord(key, fields[0].AsString()!, fields[1].AsString()!, new DateTimeOffset(ticks, TimeSpan.Zero));
    }

    private async ValueTask<bool> ExistsAsync(SessionKeys k, CancellationToken cancellationToken) =>
        (await _client.ExecuteAsync(["EXISTS", k.Meta], cancellationToken).ConfigureAwait(false)).AsInt64() == 1;

    private static void WriteLittleEndian(ReadOnlySpan<int> tokens, Span<byte> destination)
    {
        MemoryMarshal.AsBytes(tokens).CopyTo(destination);
        if (!BitConverter.IsLittleEndian)
        {
            BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<byte, int>(destination), MemoryMarshal.Cast<byte, int>(destination));
        }
    }

    private static void ReadLittleEndian(ReadOnlySpan<byte> source, Span<int> tokens)
    {
        var values = tokens[..(source.Length / sizeof(int))];
        source.CopyTo(MemoryMarshal.AsBytes(values));
        if (!BitConverter.IsLittleEndian)
        {
            BinaryPrimitives.ReverseEndianness(values, values);
        }
    }
}
