using System.Collections.Concurrent;
using KvCache.Silo.Storage.Internal;

namespace KvCache.Silo.Storage;

/// <summary>
/// The embedded-mode <see cref="ISessionStore"/>: everything in process memory, nothing survives a restart.
/// Thread-safe: each session key has its own lock, under which a fenced write checks the epoch and writes, so
/// no other operation on the session can fall between the two; a tenant's index is locked only to create,
/// delete and list.
/// </summary>
public sealed class InMemorySessionStore : ISessionStore
{
    // Epochs start at 1: 0 marks an unfenced write.
    private const long Unfenced = 0;

    // One slot per session key ever used, never removed (a few dozen bytes each): it keeps the epoch counter
    // across delete and re-create, as the Redis store's counter key does, and is the lock of the key's session.
    private readonly ConcurrentDictionary<SessionKey, Slot> _slots = new();
    private readonly ConcurrentDictionary<string, SortedSet<string>> _tenants = new(StringComparer.Ordinal);

    public ValueTask<bool> TryCreateAsync(SessionRecord record, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateRecord(record);
        var index = _tenants.GetOrAdd(record.Key.Tenant, _ => new SortedSet<string>(StringComparer.Ordinal));
        var slot = _slots.GetOrAdd(record.Key, _ => new Slot());
        lock (index)
        {
            lock (slot)
            {
                if (slot.Session is not null)
                {
                    return ValueTask.FromResult(false);
                }

                slot.Session = new Session(record);
                index.Add(record.Key.SessionId);
            }
        }

        return ValueTask.FromResult(true);
    }

    public ValueTask<SessionRecord?> GetAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        if (!_slots.TryGetValue(key, out var slot))
        {
            return ValueTask.FromResult<SessionRecord?>(null);
        }

        lock (slot)
        {
            return ValueTask.FromResult(slot.Session?.Record);
        }
    }

    public ValueTask<SessionState?> GetStateAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        if (!_slots.TryGetValue(key, out var slot))
        {
            return ValueTask.FromResult<SessionState?>(null);
        }

        lock (slot)
        {
            return ValueTask.FromResult(slot.Session?.State());
        }
    }

    public ValueTask<bool> DeleteAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        if (!_tenants.TryGetValue(key.Tenant, out var index) || !_slots.TryGetValue(key, out var slot))
        {
            return ValueTask.FromResult(false);
        }

        lock (index)
        {
            lock (slot)
            {
                if (slot.Session is null)
                {
                    return ValueTask.FromResult(false);
                }

                // The epoch stays: a re-created session must not hand out an epoch a zombie still holds.
                slot.Session = null;
                index.Remove(key.SessionId);
            }
        }

        return ValueTask.FromResult(true);
    }

    public ValueTask<SessionPage> ListAsync(string tenant, string? pageToken, int pageSize, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidatePage(tenant, pageToken, pageSize);
        if (!_tenants.TryGetValue(tenant, out var index))
        {
            return ValueTask.FromResult(new SessionPage([], null));
        }

        var page = new List<SessionState>(pageSize);
        bool more = false;
        lock (index)
        {
            IEnumerable<string> ids = pageToken is null ? index
                : index.Max is { } max && string.CompareOrdinal(pageToken, max) < 0 ? index.GetViewBetween(pageToken, max)
                : [];
            foreach (string id in ids)
            {
                if (pageToken is not null && string.CompareOrdinal(id, pageToken) <= 0)
                {
                    continue;
                }

                if (page.Count == pageSize)
                {
                    more = true;
                    break;
                }

                // Indexed ids always have a live session: create and delete change both under the index's lock.
                var slot = _slots[new SessionKey(tenant, id)];
                lock (slot)
                {
                    page.Add(slot.Session!.State());
                }
            }
        }

        return ValueTask.FromResult(new SessionPage(page, more ? page[^1].Record.Key.SessionId : null));
    }

    public ValueTask<long> GetTokenCountAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        var slot = Find(key);
        lock (slot)
        {
            return ValueTask.FromResult((long)Open(slot, key, Unfenced).TokenCount);
        }
    }

    public ValueTask<long> TakeEpochAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        var slot = _slots.GetOrAdd(key, _ => new Slot());
        lock (slot)
        {
            return ValueTask.FromResult(++slot.Epoch);
        }
    }

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, CancellationToken cancellationToken = default) =>
        AppendTokensCore(key, expectedCount, tokens, TokenLogWriter.None, Unfenced);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, long epoch, CancellationToken cancellationToken = default) =>
        AppendTokensAsync(key, expectedCount, tokens, TokenLogWriter.None, epoch, cancellationToken);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, TokenLogWriter writer, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return AppendTokensCore(key, expectedCount, tokens, writer, epoch);
    }

    public ValueTask<ReadOnlyMemory<byte>?> GetAppendRequestAsync(SessionKey key, string requestId, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateRequestId(requestId);
        var slot = Find(key);
        lock (slot)
        {
            return ValueTask.FromResult(Open(slot, key, Unfenced).Appends.TryGetValue(requestId, out var result) ? (ReadOnlyMemory<byte>?)result : null);
        }
    }

    private ValueTask AppendTokensCore(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, TokenLogWriter writer, long epoch)
    {
        StoreArguments.ValidateWriter(writer);
        var slot = Find(key);
        lock (slot)
        {
            var s = Open(slot, key, epoch);
            if (s.TokenCount != expectedCount)
            {
                throw new TokenLogConflictException(key, expectedCount, s.TokenCount);
            }

            int needed = s.TokenCount + tokens.Length;
            if (needed > s.Tokens.Length)
            {
                Array.Resize(ref s.Tokens, Math.Max(needed, Math.Max(256, s.Tokens.Length * 2)));
            }

            tokens.Span.CopyTo(s.Tokens.AsSpan(s.TokenCount));
            s.TakeWriter(writer.DecodeRequestId);
            s.TokenCount = needed;
            if (writer.AppendRequestId is { } append)
            {
                s.Appends[append] = writer.AppendResult.ToArray();
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<int> ReadTokensAsync(SessionKey key, long start, Memory<int> destination, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        var slot = Find(key);
        lock (slot)
        {
            var s = Open(slot, key, Unfenced);
            if (start >= s.TokenCount)
            {
                return ValueTask.FromResult(0);
            }

            int n = (int)Math.Min(destination.Length, s.TokenCount - start);
            s.Tokens.AsSpan((int)start, n).CopyTo(destination.Span);
            return ValueTask.FromResult(n);
        }
    }

    public ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, CancellationToken cancellationToken = default) =>
        WriteSnapshotChunkCore(key, snapshotId, index, chunk, Unfenced);

    public ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return WriteSnapshotChunkCore(key, snapshotId, index, chunk, epoch);
    }

    private ValueTask WriteSnapshotChunkCore(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch)
    {
        StoreArguments.ValidateChunk(index, chunk.Length);
        var slot = Find(key);
        byte[] copy = chunk.ToArray();
        lock (slot)
        {
            Open(slot, key, epoch).Chunks[(snapshotId, index)] = copy;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, CancellationToken cancellationToken = default) =>
        CommitSnapshotCore(key, snapshotId, header, Unfenced);

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return CommitSnapshotCore(key, snapshotId, header, epoch);
    }

    private ValueTask CommitSnapshotCore(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch)
    {
        var slot = Find(key);
        byte[] copy = header.ToArray();
        lock (slot)
        {
            var s = Open(slot, key, epoch);
            s.Snapshot = new StoredSnapshot(snapshotId, copy);

            // Like the Redis store: only the committed snapshot's chunks survive a commit.
            foreach (var chunkKey in s.Chunks.Keys.Where(k => k.SnapshotId != snapshotId).ToList())
            {
                s.Chunks.Remove(chunkKey);
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<StoredSnapshot?> GetSnapshotAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        var slot = Find(key);
        lock (slot)
        {
            return ValueTask.FromResult(Open(slot, key, Unfenced).Snapshot);
        }
    }

    public ValueTask<int> ReadSnapshotChunkAsync(SessionKey key, long snapshotId, int index, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        var slot = Find(key);
        lock (slot)
        {
            if (!Open(slot, key, Unfenced).Chunks.TryGetValue((snapshotId, index), out byte[]? chunk))
            {
                throw new SnapshotChunkNotFoundException(key, snapshotId, index);
            }

            if (chunk.Length > destination.Length)
            {
                throw new ArgumentException($"Chunk of {chunk.Length} bytes does not fit in {destination.Length} bytes.", nameof(destination));
            }

            chunk.CopyTo(destination.Span);
            return ValueTask.FromResult(chunk.Length);
        }
    }

    public ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, string fingerprint, CancellationToken cancellationToken = default) =>
        GetOrAddDecodeRequestCore(key, requestId, startPosition, fingerprint, Unfenced);

    public ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, string fingerprint, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return GetOrAddDecodeRequestCore(key, requestId, startPosition, fingerprint, epoch);
    }

    private ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestCore(SessionKey key, string requestId, long startPosition, string fingerprint, long epoch)
    {
        StoreArguments.ValidateRequestId(requestId);
        StoreArguments.ValidateFingerprint(fingerprint);
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        var slot = Find(key);
        lock (slot)
        {
            var s = Open(slot, key, epoch);
            if (!s.Requests.TryGetValue(requestId, out var recorded))
            {
                recorded = (startPosition, fingerprint);
                s.Requests.Add(requestId, recorded);
                s.TakeWriter(requestId);
            }

            long? end = s.Writer == requestId ? null : s.Ends.TryGetValue(requestId, out var e) ? e : null;
            return ValueTask.FromResult(new DecodeRequestRecord(recorded.Start, recorded.Fingerprint, end));
        }
    }

    public ValueTask<SessionFork?> TryForkAsync(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, CancellationToken cancellationToken = default) =>
        TryForkCore(source, position, snapshotId, fork, createdAt, Unfenced);

    public ValueTask<SessionFork?> TryForkAsync(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateEpoch(epoch);
        return TryForkCore(source, position, snapshotId, fork, createdAt, epoch);
    }

    private ValueTask<SessionFork?> TryForkCore(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, long epoch)
    {
        StoreArguments.ValidateFork(source, position, fork);
        var from = Find(source);

        // The source is read under its lock, the fork made under its own: never two sessions' locks at once, so forks
        // in opposite directions cannot deadlock. Chunks are never changed once stored, so the fork may share them.
        SessionRecord record;
        int[] tokens;
        StoredSnapshot? snapshot = null;
        KeyValuePair<(long SnapshotId, int Index), byte[]>[] chunks = [];
        lock (from)
        {
            var s = Open(from, source, Unfenced);
            if (s.TokenCount < position)
            {
                throw new TokenLogConflictException(source, position, s.TokenCount);
            }

            record = new SessionRecord(fork, s.Record.Model, s.Record.Codec, createdAt);
            tokens = s.Tokens.AsSpan(0, (int)position).ToArray();
            if (snapshotId is { } id && s.Snapshot?.SnapshotId == id)
            {
                snapshot = s.Snapshot;
                chunks = [.. s.Chunks.Where(c => c.Key.SnapshotId == id)];
            }
        }

        var index = _tenants.GetOrAdd(fork.Tenant, _ => new SortedSet<string>(StringComparer.Ordinal));
        var slot = _slots.GetOrAdd(fork, _ => new Slot());
        lock (index)
        {
            lock (slot)
            {
                if (epoch != Unfenced && epoch != slot.Epoch)
                {
                    throw new StaleEpochException(fork, epoch);
                }

                if (slot.Session is not null)
                {
                    return ValueTask.FromResult<SessionFork?>(null);
                }

                var made = new Session(record) { Tokens = tokens, TokenCount = tokens.Length, Snapshot = snapshot };
                foreach (var (chunkKey, chunk) in chunks)
                {
                    made.Chunks[chunkKey] = chunk;
                }

                slot.Session = made;
                index.Add(fork.SessionId);
            }
        }

        return ValueTask.FromResult<SessionFork?>(new SessionFork(record, snapshot is not null));
    }

    public ValueTask SetResidentAsync(SessionKey key, string? silo, long epoch, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateSilo(silo);
        StoreArguments.ValidateEpoch(epoch);
        var slot = Find(key);
        lock (slot)
        {
            Open(slot, key, epoch).ResidentSilo = silo;
        }

        return ValueTask.CompletedTask;
    }

    private Slot Find(SessionKey key)
    {
        StoreArguments.ValidateKey(key);
        return _slots.TryGetValue(key, out var slot) ? slot : throw new SessionNotFoundException(key);
    }

    /// <summary>The slot's session, checked under its lock: it exists and <paramref name="epoch"/> is current (unless unfenced).</summary>
    private static Session Open(Slot slot, SessionKey key, long epoch)
    {
        var s = slot.Session ?? throw new SessionNotFoundException(key);
        return epoch == Unfenced || epoch == slot.Epoch ? s : throw new StaleEpochException(key, epoch);
    }

    private sealed class Slot
    {
        public long Epoch;
        public Session? Session;
    }

    private sealed class Session(SessionRecord record)
    {
        public SessionRecord Record { get; } = record;
        public int[] Tokens = [];
        public int TokenCount { get; set; }
        public string? ResidentSilo { get; set; }
        public StoredSnapshot? Snapshot { get; set; }
        public Dictionary<(long SnapshotId, int Index), byte[]> Chunks { get; } = [];
        public Dictionary<string, (long Start, string Fingerprint)> Requests { get; } = new(StringComparer.Ordinal);

        /// <summary>Where each Decode request that another writer followed ended.</summary>
        public Dictionary<string, long> Ends { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, byte[]> Appends { get; } = new(StringComparer.Ordinal);

        /// <summary>The Decode request that wrote the log last, or null; the Redis store's meta 'writer'.</summary>
        public string? Writer { get; private set; }

        public SessionState State() => new(Record, TokenCount, ResidentSilo);

        /// <summary>Makes <paramref name="writer"/> (a Decode's request id, or null) the log's writer at its current
        /// length; the request that wrote before it ends there.</summary>
        public void TakeWriter(string? writer)
        {
            if (Writer != writer)
            {
                if (Writer is not null)
                {
                    Ends[Writer] = TokenCount;
                }

                Writer = writer;
            }
        }
    }
}
