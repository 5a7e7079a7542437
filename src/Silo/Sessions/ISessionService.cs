using KvCache.Silo.Storage;

namespace KvCache.Silo.Sessions;

/// <summary>
/// What the gateway asks of the cluster's sessions: checks requests at the boundary, calls the session grains (in
/// this process's silo or through an Orleans client), and rides out a silo's failure where that is safe.
/// </summary>
/// <remarks>Failures the caller can act on are <see cref="SessionException"/>s.</remarks>
public interface ISessionService
{
    Task<SessionInfo> CreateAsync(string tenant, string? model, string? codec, string? sessionId, CancellationToken cancellationToken);

    /// <summary>A new session of <paramref name="source"/>'s tenant holding its first <paramref name="position"/> tokens,
    /// copied in the spill store with the snapshot that covers them, if any (see <see cref="ISessionGrain.ForkAsync"/>).</summary>
    Task<SessionInfo> ForkAsync(SessionKey source, long position, CancellationToken cancellationToken);

    /// <summary>Appends exactly one of <paramref name="input"/>'s token ids, text or messages. A call with a request id
    /// applies once: repeating it returns the first attempt's result, marked replayed. A call without one gets an id of
    /// its own, so that it too can be sent again if its silo fails.</summary>
    Task<AppendResult> AppendAsync(SessionKey key, AppendInput input, CancellationToken cancellationToken);

    /// <summary>Generates tokens; each is durable in the token log before it is yielded. A stream with a request id
    /// continues on the session's new silo if its silo fails, without losing or repeating a token.</summary>
    IAsyncEnumerable<DecodedToken> DecodeAsync(SessionKey key, DecodeRequestOptions options, CancellationToken cancellationToken);

    Task<SessionInfo> GetAsync(SessionKey key, CancellationToken cancellationToken);

    /// <summary>Snapshots the session into the spill store and frees its memory.</summary>
    Task<SessionInfo> SpillAsync(SessionKey key, CancellationToken cancellationToken);

    Task DeleteAsync(SessionKey key, CancellationToken cancellationToken);

    Task<SessionListPage> ListAsync(string tenant, int pageSize, string? pageToken, CancellationToken cancellationToken);

    Task<IReadOnlyList<ModelDescription>> ListModelsAsync(string tenant, CancellationToken cancellationToken);

    /// <summary>Live migration to <paramref name="targetSilo"/> (a silo name, <c>host:port</c> or address; null: the
    /// least loaded other silo); returns once the session is in memory there.</summary>
    Task<(MigrationResult Result, SessionInfo Session)> MigrateAsync(SessionKey key, string? targetSilo, CancellationToken cancellationToken);
}

/// <summary>Shorthands over <see cref="ISessionService"/>.</summary>
public static class SessionServiceExtensions
{
    /// <summary>Appends token ids.</summary>
    public static Task<AppendResult> AppendAsync(this ISessionService sessions, SessionKey key, int[] tokens, int topLogprobs, CancellationToken cancellationToken) =>
        sessions.AppendAsync(key, AppendInput.Tokens(tokens, topLogprobs), cancellationToken);
}
