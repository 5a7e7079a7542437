using System.Collections.Concurrent;
using KvCache.Silo.Storage.Internal;

namespace KvCache.Silo.Storage;

/// <summary>
/// The embedded-mode <see cref="ISessionStore"/>: everything in process memory, nothing survives a restart.
/// Thread-safe: each session has its own lock; a tenant's index is locked only to create, delete and list.
/// A fenced write reads the directory's epoch under the session's lock, so no read of the session can fall
/// between the check and the write.
/// </summary>
public sealed class InMemorySessionStore : ISessionStore
{
    // Epochs start at 1: 0 marks an unfenced write.
    private const long Unfenced = 0;

    private readonly ConcurrentDictionary<SessionKey, Session> _sessions = new();
    private readonly ConcurrentDictionary<string, SortedSet<string>> _tenants = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<SessionKey, long> _epochs = new();

    public ValueTask<bool> TryCreateAsync(SessionRecord record, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateRecord(record);
        var index = _tenants.GetOrAdd(record.Key.Tenant, _ => new SortedSet<string>(StringComparer.Ordinal));
        lock (index)
        {
            if (!_sessions.TryAdd(record.Key, new Session(record)))
            {
                return ValueTask.FromResult(false);
            }

            index.Add(record.Key.SessionId);
        }

        return ValueTask.FromResult(true);
    }

    public ValueTask<SessionRecord?> GetAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        return ValueTask.FromResult(_sessions.TryGetValue(key, out var s) ? s.Record : null);
    }

    public ValueTask<SessionState?> GetStateAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        if (!_sessions.TryGetValue(key, out var s))
        {
            return ValueTask.FromResult<SessionState?>(null);
        }

        lock (s)
        {
            return ValueTask.FromResult<SessionState?>(s.Deleted ? null : new SessionState(s.Record, s.TokenCount, s.Resident));
        }
    }

    public ValueTask<long> TakeEpochAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        return ValueTask.FromResult(_epochs.AddOrUpdate(key, 1, (_, e) => e + 1));
    }

    public ValueTask SetResidentAsync(SessionKey key, string? silo, long epoch, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        var s = Find(key);
        lock (s)
        {
            ThrowIfDeletedOrStale(s, key, epoch);
            s.Resident = silo;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<bool> DeleteAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(key);
        if (!_tenants.TryGetValue(key.Tenant, out var index))
        {
            return ValueTask.FromResult(false);
        }

        Session? removed;
        lock (index)
        {
            if (!_sessions.TryRemove(key, out removed))
            {
                return ValueTask.FromResult(false);
            }

            index.Remove(key.SessionId);
        }

        lock (removed)
        {
            // A caller that looked the session up before the removal must not write into it afterwards.
            removed.Deleted = true;
            removed.Chunks.Clear();
            removed.Requests.Clear();
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

                if (_sessions.TryGetValue(new SessionKey(tenant, id), out var s))
                {
                    lock (s)
                    {
                        page.Add(new SessionState(s.Record, s.TokenCount, s.Resident));
                    }
                }
            }
        }

        return ValueTask.FromResult(new SessionPage(page, more ? page[^1].Record.Key.SessionId : null));
    }

    public ValueTask<long> GetTokenCountAsync(SessionKey key, CancellationToken cancellationToken = default)
    {
        var s = Find(key);
        lock (s)
        {
            ThrowIfDeleted(s, key);
            return ValueTask.FromResult((long)s.TokenCount);
        }
    }

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, CancellationToken cancellationToken = default) =>
        AppendTokensCore(key, expectedCount, tokens, Unfenced);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, long epoch, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        return AppendTokensCore(key, expectedCount, tokens, epoch);
    }

    private ValueTask AppendTokensCore(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, long epoch)
    {
        var s = Find(key);
        lock (s)
        {
            ThrowIfDeletedOrStale(s, key, epoch);
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
            s.TokenCount = needed;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<int> ReadTokensAsync(SessionKey key, long start, Memory<int> destination, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        var s = Find(key);
        lock (s)
        {
            ThrowIfDeleted(s, key);
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
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        return WriteSnapshotChunkCore(key, snapshotId, index, chunk, epoch);
    }

    private ValueTask WriteSnapshotChunkCore(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch)
    {
        StoreArguments.ValidateChunk(index, chunk.Length);
        var s = Find(key);
        byte[] copy = chunk.ToArray();
        lock (s)
        {
            ThrowIfDeletedOrStale(s, key, epoch);
            s.Chunks[(snapshotId, index)] = copy;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, CancellationToken cancellationToken = default) =>
        CommitSnapshotCore(key, snapshotId, header, Unfenced);

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        return CommitSnapshotCore(key, snapshotId, header, epoch);
    }

    private ValueTask CommitSnapshotCore(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch)
    {
        var s = Find(key);
        byte[] copy = header.ToArray();
        lock (s)
        {
            ThrowIfDeletedOrStale(s, key, epoch);
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
        var s = Find(key);
        lock (s)
        {
            ThrowIfDeleted(s, key);
            return ValueTask.FromResult(s.Snapshot);
        }
    }

    public ValueTask<int> ReadSnapshotChunkAsync(SessionKey key, long snapshotId, int index, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        var s = Find(key);
        lock (s)
        {
            ThrowIfDeleted(s, key);
            if (!s.Chunks.TryGetValue((snapshotId, index), out byte[]? chunk))
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

    public ValueTask<long> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, CancellationToken cancellationToken = default) =>
        GetOrAddDecodeRequestCore(key, requestId, startPosition, Unfenced);

    public ValueTask<long> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, long epoch, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);
        return GetOrAddDecodeRequestCore(key, requestId, startPosition, epoch);
    }

    private ValueTask<long> GetOrAddDecodeRequestCore(SessionKey key, string requestId, long startPosition, long epoch)
    {
        StoreArguments.ValidateRequestId(requestId);
        var s = Find(key);
        lock (s)
        {
            ThrowIfDeletedOrStale(s, key, epoch);
            if (!s.Requests.TryGetValue(requestId, out long recorded))
            {
                recorded = startPosition;
                s.Requests.Add(requestId, recorded);
            }

            return ValueTask.FromResult(recorded);
        }
    }

    private Session Find(SessionKey key)
    {
        StoreArguments.ValidateKey(key);
        return _sessions.TryGetValue(key, out var s) ? s : throw new SessionNotFoundException(key);
    }

    private static void ThrowIfDeleted(Session s, SessionKey key)
    {
        if (s.Deleted)
        {
            throw new SessionNotFoundException(key);
        }
    }

    private void ThrowIfDeletedOrStale(Session s, SessionKey key, long epoch)
    {
        ThrowIfDeleted(s, key);
        if (epoch != Unfenced && _epochs.GetValueOrDefault(key) != epoch)
        {
            throw new StaleEpochException(key, epoch);
        }
    }

    private sealed class Session(SessionRecord record)
    {
        public SessionRecord Record { get; } = record;
        public bool Deleted { get; set; }
        public string? Resident { get; set; }
        public int[] Tokens = [];
        public int TokenCount { get; set; }
        public StoredSnapshot? Snapshot { get; set; }
        public Dictionary<(long SnapshotId, int Index), byte[]> Chunks { get; } = [];
        public Dictionary<string, long> Requests { get; } = new(StringComparer.Ordinal);
    }
}
