namespace KvCache.Silo.Storage.Internal;

/// <summary>
/// One activation's view of the store: every write to its session carries the activation's epoch (taken with
/// <see cref="ISessionStore.TakeEpochAsync"/> when it activated), so code written against <see cref="ISessionStore"/>
/// (the snapshot writer) is fenced without knowing it.
/// </summary>
internal sealed class FencedSessionStore(ISessionStore inner, SessionKey key, long epoch) : ISessionStore
{
    public long Epoch { get; } = epoch > 0 ? epoch : throw new ArgumentOutOfRangeException(nameof(epoch), epoch, "Epochs start at 1.");

    public ValueTask<bool> TryCreateAsync(SessionRecord record, CancellationToken cancellationToken = default) =>
        inner.TryCreateAsync(record, cancellationToken);

    public ValueTask<SessionRecord?> GetAsync(SessionKey key, CancellationToken cancellationToken = default) =>
        inner.GetAsync(key, cancellationToken);

    public ValueTask<SessionState?> GetStateAsync(SessionKey key, CancellationToken cancellationToken = default) =>
        inner.GetStateAsync(key, cancellationToken);

    public ValueTask<bool> DeleteAsync(SessionKey key, CancellationToken cancellationToken = default) =>
        inner.DeleteAsync(key, cancellationToken);

    public ValueTask<SessionPage> ListAsync(string tenant, string? pageToken, int pageSize, CancellationToken cancellationToken = default) =>
        inner.ListAsync(tenant, pageToken, pageSize, cancellationToken);

    public ValueTask<long> GetTokenCountAsync(SessionKey key, CancellationToken cancellationToken = default) =>
        inner.GetTokenCountAsync(key, cancellationToken);

    public ValueTask<long> TakeEpochAsync(SessionKey key, CancellationToken cancellationToken = default) =>
        inner.TakeEpochAsync(key, cancellationToken);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, CancellationToken cancellationToken = default) =>
        inner.AppendTokensAsync(Own(key), expectedCount, tokens, Epoch, cancellationToken);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, long epoch, CancellationToken cancellationToken = default) =>
        inner.AppendTokensAsync(Own(key), expectedCount, tokens, epoch, cancellationToken);

    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, TokenLogWriter writer, long epoch, CancellationToken cancellationToken = default) =>
        inner.AppendTokensAsync(Own(key), expectedCount, tokens, writer, epoch, cancellationToken);

    /// <summary>Appends on behalf of <paramref name="writer"/>, with this view's epoch.</summary>
    public ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, TokenLogWriter writer, CancellationToken cancellationToken = default) =>
        inner.AppendTokensAsync(Own(key), expectedCount, tokens, writer, Epoch, cancellationToken);

    public ValueTask<ReadOnlyMemory<byte>?> GetAppendRequestAsync(SessionKey key, string requestId, CancellationToken cancellationToken = default) =>
        inner.GetAppendRequestAsync(key, requestId, cancellationToken);

    public ValueTask<int> ReadTokensAsync(SessionKey key, long start, Memory<int> destination, CancellationToken cancellationToken = default) =>
        inner.ReadTokensAsync(key, start, destination, cancellationToken);

    public ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, CancellationToken cancellationToken = default) =>
        inner.WriteSnapshotChunkAsync(Own(key), snapshotId, index, chunk, Epoch, cancellationToken);

    public ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch, CancellationToken cancellationToken = default) =>
        inner.WriteSnapshotChunkAsync(Own(key), snapshotId, index, chunk, epoch, cancellationToken);

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, CancellationToken cancellationToken = default) =>
        inner.CommitSnapshotAsync(Own(key), snapshotId, header, Epoch, cancellationToken);

    public ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch, CancellationToken cancellationToken = default) =>
        inner.CommitSnapshotAsync(Own(key), snapshotId, header, epoch, cancellationToken);

    public ValueTask<StoredSnapshot?> GetSnapshotAsync(SessionKey key, CancellationToken cancellationToken = default) =>
        inner.GetSnapshotAsync(key, cancellationToken);

    public ValueTask<int> ReadSnapshotChunkAsync(SessionKey key, long snapshotId, int index, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        inner.ReadSnapshotChunkAsync(key, snapshotId, index, destination, cancellationToken);

    public ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, string fingerprint, CancellationToken cancellationToken = default) =>
        inner.GetOrAddDecodeRequestAsync(Own(key), requestId, startPosition, fingerprint, Epoch, cancellationToken);

    public ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, string fingerprint, long epoch, CancellationToken cancellationToken = default) =>
        inner.GetOrAddDecodeRequestAsync(Own(key), requestId, startPosition, fingerprint, epoch, cancellationToken);

    public ValueTask<SessionFork?> TryForkAsync(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, CancellationToken cancellationToken = default) =>
        inner.TryForkAsync(source, position, snapshotId, Own(fork), createdAt, Epoch, cancellationToken);

    public ValueTask<SessionFork?> TryForkAsync(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, long epoch, CancellationToken cancellationToken = default) =>
        inner.TryForkAsync(source, position, snapshotId, Own(fork), createdAt, epoch, cancellationToken);

    public ValueTask SetResidentAsync(SessionKey key, string? silo, long epoch, CancellationToken cancellationToken = default) =>
        inner.SetResidentAsync(Own(key), silo, epoch, cancellationToken);

    // The epoch fences one session only: writing another session through this view is a bug.
    private SessionKey Own(SessionKey written) =>
        written == key ? written : throw new InvalidOperationException($"This store view writes session '{key}' only, not '{written}'.");
}
