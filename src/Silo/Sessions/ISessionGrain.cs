using Orleans.Concurrency;

namespace KvCache.Silo.Sessions;

/// <summary>
/// One chat session and its compressed KV cache, keyed by <c>tenant/session id</c> (see <see cref="SessionGrainKey"/>).
/// Orleans keeps at most one activation; it restores the cache from the spill store when a call needs it and
/// snapshots it when it goes idle, so a session is addressed by id, never by location.
/// </summary>
/// <remarks>
/// Calls that change the session run one at a time, a whole Decode stream included. Failures the caller can act
/// on are <see cref="SessionException"/>s.
/// </remarks>
public interface ISessionGrain : IGrainWithStringKey
{
    /// <summary>Creates the session (empty, position 0) with <paramref name="model"/>'s <paramref name="codec"/>
    /// (null: the silo's default model, the full cache).</summary>
    Task<SessionInfo> CreateAsync(string? model, string? codec, CancellationToken cancellationToken = default);

    /// <summary>
    /// Creates the session as a fork of the same tenant's session <paramref name="sourceSessionId"/> at
    /// <paramref name="position"/>: its model and codec, the first <paramref name="position"/> tokens of its log and, when
    /// its committed snapshot was taken at or before <paramref name="position"/>, a copy of that snapshot, all copied in
    /// the spill store (nothing is computed). Its first load restores the snapshot and replays only the log past it.
    /// </summary>
    Task<SessionInfo> ForkAsync(string sourceSessionId, long position, CancellationToken cancellationToken = default);

    /// <summary>Prefill: tokenizes or renders <paramref name="input"/> as needed and runs the model over its tokens,
    /// durable in the token log before it returns. An input the session refuses appends nothing. With a request id,
    /// the result is recorded with the tokens, and a repeated call returns it unchanged (even once the session has moved
    /// past <see cref="AppendInput.ExpectedPosition"/>).</summary>
    [ResponseTimeout("00:10:00")]
    Task<AppendResult> AppendAsync(AppendInput input, CancellationToken cancellationToken = default);

    /// <summary>Generates tokens; each is durable in the token log before it is yielded.</summary>
    IAsyncEnumerable<DecodedToken> DecodeAsync(DecodeRequestOptions options, CancellationToken cancellationToken = default);

    /// <summary>The session's facts; runs beside any other call.</summary>
    [AlwaysInterleave]
    Task<SessionInfo> GetInfoAsync();

    /// <summary>Snapshots the cache into the spill store, frees its memory and ends the activation.</summary>
    [ResponseTimeout("00:10:00")]
    Task<SessionInfo> SpillAsync(CancellationToken cancellationToken = default);

    Task DeleteAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Live migration: snapshots the cache into the spill store (out of band: the bytes never travel in Orleans'
    /// migration message), then lets Orleans move the activation to <paramref name="targetSilo"/> (a silo name or
    /// address; null: the active silo with the fewest sessions), where it restores that snapshot before its next call.
    /// Throws, leaving the session whole here, when the snapshot cannot be written.
    /// </summary>
    [ResponseTimeout("00:10:00")]
    Task<MigrationResult> MigrateAsync(string? targetSilo, CancellationToken cancellationToken = default);
}

/// <summary>A session grain's key: the tenant and the session id, so tenants never share a session.</summary>
public static class SessionGrainKey
{
    public static string Format(Storage.SessionKey key) => $"{key.Tenant}/{key.SessionId}";

    /// <summary>Session ids hold no '/', tenants may: the last '/' separates them.</summary>
    public static Storage.SessionKey Parse(string grainKey)
    {
        var slash = grainKey.LastIndexOf('/');
        return slash <= 0 || slash == grainKey.Length - 1
            ? throw new ArgumentException($"'{grainKey}' is not a session grain key (tenant/session id).", nameof(grainKey))
            : new Storage.SessionKey(grainKey[..slash], grainKey[(slash + 1)..]);
    }
}
