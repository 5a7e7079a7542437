using KvCache.Silo.Storage;

namespace KvCache.Silo.Sessions;

/// <summary>
/// What the gateway asks of the silo that owns a session. In the single-node service it is called in
/// process; across processes it is the silo's internal gRPC surface.
/// </summary>
/// <remarks>Failures the caller can act on are <see cref="SessionException"/>s.</remarks>
public interface ISessionService
{
    Task<SessionInfo> CreateAsync(string tenant, string? model, string? codec, string? sessionId, CancellationToken cancellationToken);

    Task<AppendResult> AppendAsync(SessionKey key, ReadOnlyMemory<int> tokens, int topLogprobs, CancellationToken cancellationToken);

    /// <summary>Generates tokens; each is durable in the token log before it is yielded.</summary>
    IAsyncEnumerable<DecodedToken> DecodeAsync(SessionKey key, DecodeRequestOptions options, CancellationToken cancellationToken);

    Task<SessionInfo> GetAsync(SessionKey key, CancellationToken cancellationToken);

    /// <summary>Snapshots the session into the spill store and frees its memory.</summary>
    Task<SessionInfo> SpillAsync(SessionKey key, CancellationToken cancellationToken);

    Task DeleteAsync(SessionKey key, CancellationToken cancellationToken);

    Task<SessionListPage> ListAsync(string tenant, int pageSize, string? pageToken, CancellationToken cancellationToken);

    IReadOnlyList<ModelDescription> ListModels();
}
