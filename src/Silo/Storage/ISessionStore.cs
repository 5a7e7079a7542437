namespace KvCache.Silo.Storage;

/// <summary>A session's address: tenants never share a namespace.</summary>
public readonly record struct SessionKey(string Tenant, string SessionId)
{
    public override string ToString() => $"{Tenant}/{SessionId}";
}

/// <summary>What is persisted about a session besides its tokens and snapshot.</summary>
public sealed record SessionRecord(SessionKey Key, string Model, string Codec, DateTimeOffset CreatedAt);

/// <summary>
/// A session's record with its token count and the silo holding its cache in memory (null: none), as one
/// read saw them.
/// </summary>
public sealed record SessionState(SessionRecord Record, long TokenCount, string? ResidentSilo);

/// <summary>One page of a tenant's sessions, ordered by id.</summary>
public sealed record SessionPage(IReadOnlyList<SessionState> Sessions, string? NextPageToken);

/// <summary>
/// The durable home of sessions (the spill store): metadata, the token log, snapshots and decode requests.
/// Implemented in memory (embedded mode) and on Redis; one contract suite runs against both.
/// </summary>
/// <remarks>
/// The token log is the source of truth for a session's context: a token is durable once
/// <see cref="AppendTokensAsync"/> completes. A snapshot is the serialized cache at some position; it
/// becomes visible only when committed, atomically replacing the previous one.
/// Operations on a session that does not exist throw <see cref="SessionNotFoundException"/>.
/// <para>
/// Fencing: a stale activation can still run briefly after another one took the session over, so each write
/// has an overload taking the writer's <c>epoch</c> (from <see cref="TakeEpochAsync"/>); it succeeds only while
/// that is the session's current epoch, checked atomically with the write, and otherwise throws
/// <see cref="StaleEpochException"/> having written nothing. Silos write only through those (see
/// <see cref="FencedSessionStore"/>); the unfenced writes are for a single writer (tools, tests).
/// </para>
/// </remarks>
public interface ISessionStore
{
    /// <summary>Creates the session; false if one with that key exists.</summary>
    ValueTask<bool> TryCreateAsync(SessionRecord record, CancellationToken cancellationToken = default);

    ValueTask<SessionRecord?> GetAsync(SessionKey key, CancellationToken cancellationToken = default);

    /// <summary>Record, token count and resident silo in one read (one round trip on Redis); null if no session.</summary>
    ValueTask<SessionState?> GetStateAsync(SessionKey key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Removes the session and everything stored for it except its epoch counter (see <see cref="TakeEpochAsync"/>);
    /// false if it did not exist.
    /// </summary>
    ValueTask<bool> DeleteAsync(SessionKey key, CancellationToken cancellationToken = default);

    /// <summary>A tenant's sessions ordered by id, starting after <paramref name="pageToken"/>.</summary>
    ValueTask<SessionPage> ListAsync(string tenant, string? pageToken, int pageSize, CancellationToken cancellationToken = default);

    /// <summary>Number of tokens in the session's token log.</summary>
    ValueTask<long> GetTokenCountAsync(SessionKey key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Takes the session's next epoch (1, 2, 3, ...): from then on only writes carrying it are accepted. Works whether or
    /// not the session exists yet (an activation takes it before a create); the counter is never deleted, so no epoch
    /// is handed out twice for one session key, even across delete and re-create.
    /// </summary>
    ValueTask<long> TakeEpochAsync(SessionKey key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Appends tokens if the log holds exactly <paramref name="expectedCount"/> tokens (compare-and-append).
    /// </summary>
    /// <exception cref="TokenLogConflictException">The log's length differs from <paramref name="expectedCount"/>.</exception>
    ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, CancellationToken cancellationToken = default);

    /// <inheritdoc cref="AppendTokensAsync(SessionKey, long, ReadOnlyMemory{int}, CancellationToken)"/>
    /// <exception cref="StaleEpochException"><paramref name="epoch"/> is not the session's current epoch.</exception>
    ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, long epoch, CancellationToken cancellationToken = default);

    /// <summary>
    /// Appends tokens as <see cref="AppendTokensAsync(SessionKey, long, ReadOnlyMemory{int}, long, CancellationToken)"/>
    /// does, on behalf of <paramref name="writer"/>, recorded in the same atomic step: an Append's request id with its
    /// result (<see cref="GetAppendRequestAsync"/>), and which Decode request is the log's current writer. A write by
    /// anyone else ends the Decode request that wrote before it (see <see cref="DecodeRequestRecord.End"/>).
    /// The overloads without a writer write as <see cref="TokenLogWriter.None"/>.
    /// </summary>
    /// <exception cref="TokenLogConflictException">The log's length differs from <paramref name="expectedCount"/>.</exception>
    /// <exception cref="StaleEpochException"><paramref name="epoch"/> is not the session's current epoch.</exception>
    ValueTask AppendTokensAsync(SessionKey key, long expectedCount, ReadOnlyMemory<int> tokens, TokenLogWriter writer, long epoch, CancellationToken cancellationToken = default);

    /// <summary>The result an Append with <paramref name="requestId"/> recorded with its tokens, or null if none did.</summary>
    ValueTask<ReadOnlyMemory<byte>?> GetAppendRequestAsync(SessionKey key, string requestId, CancellationToken cancellationToken = default);

    /// <summary>Reads tokens from <paramref name="start"/>; returns how many were read (fewer at the log's end).</summary>
    ValueTask<int> ReadTokensAsync(SessionKey key, long start, Memory<int> destination, CancellationToken cancellationToken = default);

    /// <summary>Stores one chunk (≤ 1 MiB) of a snapshot that is not yet committed.</summary>
    ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, CancellationToken cancellationToken = default);

    /// <inheritdoc cref="WriteSnapshotChunkAsync(SessionKey, long, int, ReadOnlyMemory{byte}, CancellationToken)"/>
    /// <exception cref="StaleEpochException"><paramref name="epoch"/> is not the session's current epoch.</exception>
    ValueTask WriteSnapshotChunkAsync(SessionKey key, long snapshotId, int index, ReadOnlyMemory<byte> chunk, long epoch, CancellationToken cancellationToken = default);

    /// <summary>
    /// Makes snapshot <paramref name="snapshotId"/> (its chunks already written) the session's current one, with
    /// <paramref name="header"/> describing it, and deletes the chunks of the snapshot it replaces.
    /// </summary>
    ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, CancellationToken cancellationToken = default);

    /// <inheritdoc cref="CommitSnapshotAsync(SessionKey, long, ReadOnlyMemory{byte}, CancellationToken)"/>
    /// <exception cref="StaleEpochException"><paramref name="epoch"/> is not the session's current epoch.</exception>
    ValueTask CommitSnapshotAsync(SessionKey key, long snapshotId, ReadOnlyMemory<byte> header, long epoch, CancellationToken cancellationToken = default);

    /// <summary>The current snapshot's id and header, or null if the session has none.</summary>
    ValueTask<StoredSnapshot?> GetSnapshotAsync(SessionKey key, CancellationToken cancellationToken = default);

    /// <summary>Reads chunk <paramref name="index"/> of a snapshot into destination; returns its length.</summary>
    ValueTask<int> ReadSnapshotChunkAsync(SessionKey key, long snapshotId, int index, Memory<byte> destination, CancellationToken cancellationToken = default);

    /// <summary>
    /// Records that decode request <paramref name="requestId"/> started at <paramref name="startPosition"/> with
    /// parameters <paramref name="fingerprint"/>, and makes it the log's current writer (ending the request that wrote
    /// before it), unless it was recorded before; returns the request as recorded.
    /// </summary>
    ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, string fingerprint, CancellationToken cancellationToken = default);

    /// <inheritdoc cref="GetOrAddDecodeRequestAsync(SessionKey, string, long, string, CancellationToken)"/>
    /// <exception cref="StaleEpochException"><paramref name="epoch"/> is not the session's current epoch.</exception>
    ValueTask<DecodeRequestRecord> GetOrAddDecodeRequestAsync(SessionKey key, string requestId, long startPosition, string fingerprint, long epoch, CancellationToken cancellationToken = default);

    /// <summary>
    /// Creates session <paramref name="fork"/> as a copy of the same tenant's session <paramref name="source"/> up to
    /// <paramref name="position"/>: the source's model and codec (created at <paramref name="createdAt"/>), the first
    /// <paramref name="position"/> tokens of its log and, when <paramref name="snapshotId"/> is still the source's
    /// committed snapshot, that snapshot (the caller checked that it was taken at or before <paramref name="position"/>).
    /// Nothing else is copied (request records, resident silo). One atomic step: nobody sees the fork half-made.
    /// Returns null, having written nothing, if session <paramref name="fork"/> exists.
    /// </summary>
    /// <exception cref="SessionNotFoundException">Session <paramref name="source"/> does not exist.</exception>
    /// <exception cref="TokenLogConflictException">The source's log holds fewer than <paramref name="position"/> tokens.</exception>
    /// <exception cref="ArgumentException">The two keys are of different tenants, or the same key.</exception>
    ValueTask<SessionFork?> TryForkAsync(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, CancellationToken cancellationToken = default);

    /// <inheritdoc cref="TryForkAsync(SessionKey, long, long?, SessionKey, DateTimeOffset, CancellationToken)"/>
    /// <param name="epoch">The fork's epoch (the activation creating it took it): the fork is a write to the new session.</param>
    /// <exception cref="StaleEpochException"><paramref name="epoch"/> is not the fork's current epoch.</exception>
    ValueTask<SessionFork?> TryForkAsync(SessionKey source, long position, long? snapshotId, SessionKey fork, DateTimeOffset createdAt, long epoch, CancellationToken cancellationToken = default);

    /// <summary>
    /// Records which silo holds the session's cache in memory (null: none). Fenced only: just the session's current
    /// activation may say where it lives. The silo is its Orleans address (<c>host:port@generation</c>, which a restarted
    /// silo never reuses), at most 128 characters.
    /// </summary>
    /// <exception cref="StaleEpochException"><paramref name="epoch"/> is not the session's current epoch.</exception>
    ValueTask SetResidentAsync(SessionKey key, string? silo, long epoch, CancellationToken cancellationToken = default);
}

/// <summary>
/// Who appends tokens to a session's log: a Decode with a request id (<see cref="DecodeRequestId"/>), an Append with a
/// request id (<see cref="AppendRequestId"/> and the result a retry of it returns), or anyone else (<see cref="None"/>).
/// </summary>
public readonly record struct TokenLogWriter(string? DecodeRequestId, string? AppendRequestId, ReadOnlyMemory<byte> AppendResult)
{
    public static TokenLogWriter None => default;

    public static TokenLogWriter Decode(string requestId) => new(requestId, null, default);

    public static TokenLogWriter Append(string requestId, ReadOnlyMemory<byte> result) => new(null, requestId, result);
}

/// <summary>A decode request as the store recorded it.</summary>
/// <param name="Start">The log position its first token was written at.</param>
/// <param name="Fingerprint">Its parameters' fingerprint; null for a request recorded before fingerprints were.</param>
/// <param name="End">Where its tokens end once another writer has written after it; null while it is the log's current
/// writer (it may go on).</param>
public sealed record DecodeRequestRecord(long Start, string? Fingerprint, long? End);

/// <summary>What <see cref="ISessionStore.TryForkAsync(SessionKey, long, long?, SessionKey, DateTimeOffset, CancellationToken)"/> made.</summary>
/// <param name="Record">The fork's record: the source's model and codec.</param>
/// <param name="SnapshotCopied">The snapshot asked for was still the source's and the fork holds a copy of it.</param>
public sealed record SessionFork(SessionRecord Record, bool SnapshotCopied);

/// <summary>A committed snapshot: its id (names its chunks) and its encoded header.</summary>
public sealed record StoredSnapshot(long SnapshotId, ReadOnlyMemory<byte> Header);

public sealed class SessionNotFoundException(SessionKey key) : Exception($"Session '{key.SessionId}' does not exist.")
{
    public SessionKey Key { get; } = key;
}

public sealed class TokenLogConflictException(SessionKey key, long expected, long actual)
    : Exception($"Token log of session '{key.SessionId}' holds {actual} tokens, expected {expected}.")
{
    public long Expected { get; } = expected;
    public long Actual { get; } = actual;
}
