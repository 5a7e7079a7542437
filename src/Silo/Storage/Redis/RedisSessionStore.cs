using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using KvCache.Silo.Storage.Internal;
using KvCache.Silo.Storage.Redis.Internal;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace KvCache.Silo.Storage.Redis;

/// <summary>
/// <see cref="ISessionStore"/> on Redis (standalone server) through StackExchange.Redis: each operation is one
/// command or one Lua script (<see cref="StoreScripts"/>), so it is atomic; snapshot chunks move as plain SET and
/// GET. Key layout in <see cref="SessionKeys"/>. Fenced writes compare the session's epoch counter in the same
/// script.
/// </summary>
/// <remarks>
/// A cancellation token is honoured until the operation is sent; after that it runs to its reply or to
/// <see cref="RedisStoreOptions.CommandTimeout"/>, because StackExchange.Redis may still be reading the caller's
/// buffer until then. Connection failures surface as described on <see cref="RedisConnection"/>.
/// </remarks>
public sealed class RedisSessionStore : ISessionStore
{
    // Epochs start at 1: 0 marks an unfenced write (the scripts skip the check).
    private const long Unfenced = 0;
    private const long StaleEpoch = -2;

    private readonly RedisConnection _connection;
    private readonly string _prefix;
    private readonly TimeSpan _chunkTtl;

    public RedisSessionStore(RedisConnection connection, IOptions<RedisStoreOptions> options)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        o.Validate();
        _connection = connection;
        _prefix = o.KeyPrefix;
        _chunkTtl = o.UncommittedChunkTtl;
    }

    public async ValueTask<bool> TryCreateAsync(SessionRecord record, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateRecord(record);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(record.Key);
        var created = await Database().ScriptEvaluateAsync(StoreScripts.Create, new
        {
            meta = (RedisKey)k.Meta,
            index = (RedisKey)k.TenantIndex,
            model = record.Model,
            codec = record.Codec,
            created = record.CreatedAt.UtcTicks,
            session = record.Key.SessionId,
        }).ConfigureAwait(false);
        return (long)created == 1;
    }

    public async ValueTask<SessionRecord?> GetAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        cancellationToken.ThrowIfCancellationRequested();
        var fields = await Database().HashGetAsync(Keys(key).Meta, RecordFields).ConfigureAwait(false);
        return fields[0].IsNull || fields[1].IsNull || fields[2].IsNull ? null : ParseRecord(key, fields[0], fields[1], fields[2]);
    }

    public ValueTask<SessionState?> GetStateAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        cancellationToken.ThrowIfCancellationRequested();
        return new ValueTask<SessionState?>(GetStateCoreAsync(key));
    }

    public async ValueTask<bool> DeleteAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        var existed = await Database().ScriptEvaluateAsync(StoreScripts.Delete, new
        {
            meta = (RedisKey)k.Meta,
            tokens = (RedisKey)k.Tokens,
            snap = (RedisKey)k.Snapshot,
            chunks = (RedisKey)k.Chunks,
            reqs = (RedisKey)k.Requests,
            index = (RedisKey)k.TenantIndex,
            session = key.SessionId,
            chunkPrefix = k.ChunkPrefix,
        }).ConfigureAwait(false);
        return (long)existed == 1;
    }

    public async ValueTask<SessionPage> ListAsync(string tenant, string? pageToken, int pageSize, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidatePage(tenant, pageToken, pageSize);
        cancellationToken.ThrowIfCancellationRequested();
        var ids = await Database().SortedSetRangeByValueAsync(
            SessionKeys.TenantIndexKey(_prefix, tenant),
            min: pageToken ?? default(RedisValue),
            max: default,
            exclude: Exclude.Start,
            order: Order.Ascending,
            skip: 0,
            take: pageSize + 1).ConfigureAwait(false);
        int count = Math.Min(pageSize, ids.Length);

        // One round trip for the page: every lookup is in flight at once.
        var lookups = new Task<SessionState?>[count];
        for (int i = 0; i < count; i++)
        {
            lookups[i] = GetStateCoreAsync(new SessionKey(tenant, ids[i]!));
        }

        var sessions = new List<SessionState>(count);
        foreach (var lookup in lookups)
        {
            // A session deleted since the index was read is left out.
            if (await lookup.ConfigureAwait(false) is { } state)
            {
                sessions.Add(state);
            }
        }

        return new SessionPage(sessions, ids.Length > pageSize ? (string?)ids[count - 1] : null);
    }

    public async ValueTask<long> GetTokenCountAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        long bytes = (long)await Database().ScriptEvaluateAsync(StoreScripts.Length, new
        {
            meta = (RedisKey)k.Meta,
            tokens = (RedisKey)k.Tokens,
        }).ConfigureAwait(false);
        return bytes < 0 ? throw new SessionNotFoundException(key) : bytes / sizeof(int);
    }

    public async ValueTask<long> TakeEpochAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        cancellationToken.ThrowIfCancellationRequested();
        return await Database().StringIncrementAsync(Keys(key).Epoch).ConfigureAwait(false);
    }

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, CancellationToken cancellationToken = default) =>
        AppendTokensCore(key, expectedCount, tokens, TokenLogWriter.None, Unfenced, cancellationToken);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, long epoch, CancellationToken cancellationToken = default) =>
        AppendTokensAsync(key, expectedCount, tokens, TokenLogWriter.None, epoch, cancellationToken);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, TokenLogWriter writer, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return AppendTokensCore(key, expectedCount, tokens, writer, epoch, cancellationToken);
    }

    public async ValueTask<ReadOnlyMemory<byte>?> GetAppendRequestAsync(SessionKey key, string requestId, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        StoreArguments.ValidateRequestId(requestId);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        var reply = await Database().ScriptEvaluateAsync(StoreScripts.GetAppendRequest, new
        {
            meta = (RedisKey)k.Meta,
            reqs = (RedisKey)k.Requests,
            field = "a:" + requestId,
        }).ConfigureAwait(false);
        if (reply.Resp2Type == ResultType.Integer)
        {
            throw new SessionNotFoundException(key);
        }

        return reply.IsNull ? (ReadOnlyMemory<byte>?)null : (byte[])reply!;
    }

    private async ValueTask AppendTokensCore(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, TokenLogWriter writer, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateKey(key);
        StoreArguments.ValidateWriter(writer);
        ArgumentOutOfRangeException.ThrowIfNegative(expectedCount);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        byte[] bytes = ArrayPool<byte>.Shared.Rent(tokens.Length * sizeof(int));
        try
        {
            var data = bytes.AsMemory(0, tokens.Length * sizeof(int));
            WriteLittleEndian(tokens.Span, data.Span);
            long before = (long)await Database().ScriptEvaluateAsync(StoreScripts.Append, new
            {
                meta = (RedisKey)k.Meta,
                tokens = (RedisKey)k.Tokens,
                reqs = (RedisKey)k.Requests,
                epochCounter = (RedisKey)k.Epoch,
                expected = expectedCount * sizeof(int),
                data = (RedisValue)(ReadOnlyMemory<byte>)data,
                writer = writer.DecodeRequestId ?? "",
                append = writer.AppendRequestId ?? "",
                result = (RedisValue)writer.AppendResult,
                epoch,
            }).ConfigureAwait(false);
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
        if (destination.IsEmpty)
        {
            // Nothing to read, but a missing session still throws.
            await GetTokenCountAsync(key, cancellationToken).ConfigureAwait(false);
            return 0;
        }

        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        var range = await Database().ScriptEvaluateAsync(StoreScripts.ReadTokens, new
        {
            meta = (RedisKey)k.Meta,
            tokens = (RedisKey)k.Tokens,
            first = start * sizeof(int),
            last = (start + destination.Length) * sizeof(int) - 1,
        }).ConfigureAwait(false);
        if (range.Resp2Type == ResultType.Integer)
        {
            throw new SessionNotFoundException(key);
        }

        ReadOnlyMemory<byte> bytes = (RedisValue)range;
        int read = bytes.Length / sizeof(int);
        ReadLittleEndian(bytes.Span[..(read * sizeof(int))], destination.Span);
        return read;
    }

    public ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, CancellationToken cancellationToken = default) =>
        WriteSnapshotChunkCore(key, snapshotId, index, chunk, Unfenced, cancellationToken);

    public ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return WriteSnapshotChunkCore(key, snapshotId, index, chunk, epoch, cancellationToken);
    }

    private async ValueTask WriteSnapshotChunkCore(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateKey(key);
        StoreArguments.ValidateChunk(index, chunk.Length);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        string member = SessionKeys.ChunkMember(snapshotId, index);
        string chunkKey = k.ChunkPrefix + member;

        // Tracking and SET go out back to back on one connection (one round trip). The chunk itself is a plain SET,
        // not a script argument, so 1 MiB is not copied through Lua; its TTL removes it if the session vanished
        // meanwhile.
        var db = Database();
        var tracked = db.ScriptEvaluateAsync(StoreScripts.TrackChunk, new
        {
            meta = (RedisKey)k.Meta,
            chunks = (RedisKey)k.Chunks,
            epochCounter = (RedisKey)k.Epoch,
            member,
            epoch,
        });
        var stored = db.StringSetAsync(chunkKey, chunk, _chunkTtl);
        long exists;
        try
        {
            exists = (long)await tracked.ConfigureAwait(false);
        }
        finally
        {
            // The caller may reuse the chunk's memory once this returns: the SET must be done with it.
            await stored.ConfigureAwait(false);
        }

        if (exists != 1)
        {
            // A stale writer's chunk is never tracked, so no commit can make it visible; remove it now.
            await db.KeyDeleteAsync(chunkKey).ConfigureAwait(false);
            throw exists == StaleEpoch ? new StaleEpochException(key, epoch) : new SessionNotFoundException(key);
        }
    }

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, CancellationToken cancellationToken = default) =>
        CommitSnapshotCore(key, snapshotId, header, Unfenced, cancellationToken);

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return CommitSnapshotCore(key, snapshotId, header, epoch, cancellationToken);
    }

    private async ValueTask CommitSnapshotCore(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateKey(key);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        long result = (long)await Database().ScriptEvaluateAsync(StoreScripts.Commit, new
        {
            meta = (RedisKey)k.Meta,
            snap = (RedisKey)k.Snapshot,
            chunks = (RedisKey)k.Chunks,
            epochCounter = (RedisKey)k.Epoch,
            id = snapshotId,
            header = (RedisValue)header,
            chunkPrefix = k.ChunkPrefix,
            epoch,
        }).ConfigureAwait(false);
        if (result != 1)
        {
            throw result == StaleEpoch ? new StaleEpochException(key, epoch) : new SessionNotFoundException(key);
        }
    }

    public async ValueTask<StoredSnapshot?> GetSnapshotAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        var reply = await Database().ScriptEvaluateAsync(StoreScripts.GetSnapshot, new
        {
            meta = (RedisKey)k.Meta,
            snap = (RedisKey)k.Snapshot,
        }).ConfigureAwait(false);
        if (reply.Resp2Type == ResultType.Integer)
        {
            throw new SessionNotFoundException(key);
        }

        var fields = (RedisResult[])reply!;
        return fields[0].IsNull || fields[1].IsNull ? null : new StoredSnapshot((long)fields[0], (byte[])fields[1]!);
    }

    public async ValueTask<int> ReadSnapshotChunkAsync(SessionKey key, long snapshotId, int index, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        var db = Database();

        // The reply lands in a pooled lease, copied once into the caller's memory.
        using (var chunk = await db.StringGetLeaseAsync(k.ChunkPrefix + SessionKeys.ChunkMember(snapshotId, index)).ConfigureAwait(false))
        {
            if (chunk is not null)
            {
                if (chunk.Length > destination.Length)
                {
                    throw new ArgumentException($"Chunk of {chunk.Length} bytes does not fit in {destination.Length} bytes.", nameof(destination));
                }

                chunk.Span.CopyTo(destination.Span);
                return chunk.Length;
            }
        }

        // Only a miss pays a second command, to tell a missing chunk from a missing session.
        return await db.KeyExistsAsync(k.Meta).ConfigureAwait(false)
            ? throw new SnapshotChunkNotFoundException(key, snapshotId, index)
            : throw new SessionNotFoundException(key);
    }

    public ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, string fingerprint, CancellationToken cancellationToken = default) =>
        GetOrAddDecodeRequestCore(key, requestId, startPosition, fingerprint, Unfenced, cancellationToken);

    public ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, string fingerprint, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return GetOrAddDecodeRequestCore(key, requestId, startPosition, fingerprint, epoch, cancellationToken);
    }

    private async ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestCore(SessionKey key, string requestId, long startPosition, string fingerprint, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateKey(key);
        StoreArguments.ValidateRequestId(requestId);
        StoreArguments.ValidateFingerprint(fingerprint);
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        var reply = await Database().ScriptEvaluateAsync(StoreScripts.GetOrAddRequest, new
        {
            meta = (RedisKey)k.Meta,
            tokens = (RedisKey)k.Tokens,
            reqs = (RedisKey)k.Requests,
            epochCounter = (RedisKey)k.Epoch,
            request = requestId,
            recorded = DecodeRequests.Format(startPosition, fingerprint),
            epoch,
        }).ConfigureAwait(false);
        if (reply.Resp2Type == ResultType.Integer)
        {
            throw (long)reply == StaleEpoch ? new StaleEpochException(key, epoch) : new SessionNotFoundException(key);
        }

        var fields = (RedisResult[])reply!;
        long? end = (long)fields[2] == 1 || fields[1].IsNull ? null : (long)fields[1] / sizeof(int);
        return DecodeRequests.Parse((string)fields[0]!, end);
    }

    public ValueTask<SessionFork?> TryForkAsync(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, CancellationToken cancellationToken = default) =>
        TryForkCore(source, position, snapshotId, fork, createdAt, Unfenced, cancellationToken);

    public ValueTask<SessionFork?> TryForkAsync(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return TryForkCore(source, position, snapshotId, fork, createdAt, epoch, cancellationToken);
    }

    private async ValueTask<SessionFork?> TryForkCore(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, long epoch, CancellationToken cancellationToken)
    {
        StoreArguments.ValidateFork(source, position, fork);
        cancellationToken.ThrowIfCancellationRequested();
        var from = Keys(source);
        var k = Keys(fork);
        var reply = (RedisResult[])(await Database().ScriptEvaluateAsync(StoreScripts.Fork, new
        {
            srcMeta = (RedisKey)from.Meta,
            srcTokens = (RedisKey)from.Tokens,
            srcSnap = (RedisKey)from.Snapshot,
            srcChunks = (RedisKey)from.Chunks,
            meta = (RedisKey)k.Meta,
            tokens = (RedisKey)k.Tokens,
            snap = (RedisKey)k.Snapshot,
            chunks = (RedisKey)k.Chunks,
            index = (RedisKey)k.TenantIndex,
            epochCounter = (RedisKey)k.Epoch,
            length = position * sizeof(int),
            snapshot = snapshotId is { } id ? id.ToString(CultureInfo.InvariantCulture) : "",
            srcChunkPrefix = from.ChunkPrefix,
            chunkPrefix = k.ChunkPrefix,
            created = createdAt.UtcTicks,
            session = fork.SessionId,
            epoch,
        }).ConfigureAwait(false))!;
        switch ((long)reply[0])
        {
            case -1:
                throw new SessionNotFoundException(source);
            case StaleEpoch:
                throw new StaleEpochException(fork, epoch);
            case -3:
                throw new TokenLogConflictException(source, position, (long)reply[1] / sizeof(int));
            case 0:
                return null;
        }

        return new SessionFork(new SessionRecord(fork, (string)reply[2]!, (string)reply[3]!, createdAt), (long)reply[1] == 1);
    }

    public async ValueTask SetResidentAsync(SessionKey key, string? silo, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        StoreArguments.ValidateSilo(silo);
        StoreArguments.ValidateEpoch(epoch);
        cancellationToken.ThrowIfCancellationRequested();
        var k = Keys(key);
        long result = (long)await Database().ScriptEvaluateAsync(StoreScripts.SetResident, new
        {
            meta = (RedisKey)k.Meta,
            epochCounter = (RedisKey)k.Epoch,
            silo = silo ?? "",
            epoch,
        }).ConfigureAwait(false);
        if (result != 1)
        {
            throw result == StaleEpoch ? new StaleEpochException(key, epoch) : new SessionNotFoundException(key);
        }
    }

    private static readonly RedisValue[] RecordFields = ["model", "codec", "created"];

    private IDatabase Database() => _connection.NextDatabase();

    private SessionKeys Keys(SessionKey key) => new(_prefix, key);

    private async Task<SessionState?> GetStateCoreAsync(SessionKey key)
    {
        var k = Keys(key);
        var reply = await Database().ScriptEvaluateAsync(StoreScripts.GetState, new
        {
            meta = (RedisKey)k.Meta,
            tokens = (RedisKey)k.Tokens,
        }).ConfigureAwait(false);
        if (reply.IsNull)
        {
            return null;
        }

        var fields = (RedisValue[])reply!;
        var record = ParseRecord(key, fields[0], fields[1], fields[2]);
        return new SessionState(record, (long)fields[4] / sizeof(int), (string?)fields[3]);
    }

    private static SessionRecord ParseRecord(SessionKey key, RedisValue model, RedisValue codec, RedisValue created) =>
        new(key, model!, codec!, new DateTimeOffset(long.Parse((string)created!, CultureInfo.InvariantCulture), TimeSpan.Zero));

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
