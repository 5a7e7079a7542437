using System.Collections.Concurrent;
using KvCache.GpuWorker;
using KvCache.Silo.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Sessions.Internal;

/// <summary>
/// The sessions whose KV caches are in this silo's memory. Orleans knows activations, not cache memory: when a
/// model's cache pool or <see cref="SiloOptions.MaxActiveSessions"/> is full, this picks which idle session to spill,
/// least recently used first, and asks it to (through its grain, so it runs on the session's own turn).
/// </summary>
internal sealed class ResidentSessions(IOptions<SiloOptions> options, ILogger<ResidentSessions> logger)
{
    private readonly ConcurrentDictionary<SessionGrain, byte> _sessions = new(ReferenceEqualityComparer.Instance);
    private readonly int _maxActive = options.Value.MaxActiveSessions;

    public int Count => _sessions.Count;

    /// <summary>The resident sessions now, least recently used first.</summary>
    public IReadOnlyList<SessionGrain> LeastRecentlyUsedFirst() => _sessions.Keys.OrderBy(g => g.LastUsedTimestamp).ToArray();

    public void Add(SessionGrain session) => _sessions.TryAdd(session, 0);

    public void Remove(SessionGrain session) => _sessions.TryRemove(session, out _);

    /// <summary>Makes room for one more resident session, spilling idle ones; RESOURCE_EXHAUSTED when all are busy.</summary>
    public async Task MakeRoomAsync(SessionGrain requester)
    {
        while (Count >= _maxActive)
        {
            if (!await ReleaseOneAsync(model: null, requester))
            {
                ResidentSessionsLog.SessionLimitReached(logger, _maxActive, requester.Key.Tenant, requester.Key.SessionId);
                throw new SessionException(
                    SessionErrorCode.ResourceExhausted,
                    $"This silo holds {_maxActive} active sessions (Silo:MaxActiveSessions) and none is idle; retry later.");
            }
        }
    }

    /// <summary>
    /// Runs an action that takes cache memory of <paramref name="model"/>; while its pool is full, spills the least
    /// recently used idle session of that model and tries again.
    /// </summary>
    /// <exception cref="CacheCapacityException">The pool is full and no session of the model is idle.</exception>
    public async Task<T> WithCacheMemoryAsync<T>(ILanguageModel model, SessionGrain requester, Func<Task<T>> action)
    {
        while (true)
        {
            try
            {
                return await action();
            }
            catch (CacheCapacityException)
            {
                if (!await ReleaseOneAsync(model, requester))
                {
                    ResidentSessionsLog.CacheMemoryExhausted(logger, model.Id, requester.Key.Tenant, requester.Key.SessionId);
                    throw;
                }
            }
        }
    }

    private async Task<bool> ReleaseOneAsync(ILanguageModel? model, SessionGrain requester)
    {
        foreach (var session in LeastRecentlyUsedFirst())
        {
            if (session != requester && session.IsIdle && (model is null || session.Model == model)
                && await session.AsReference<IResidentSessionGrain>().TryReleaseAsync("memory pressure"))
            {
                return true;
            }
        }

        return false;
    }
}

internal static partial class ResidentSessionsLog
{
    [LoggerMessage(200, LogLevel.Warning, "KV-cache memory of model {ModelId} is full and no idle session can be spilled; refusing session {Tenant}/{SessionId}")]
    public static partial void CacheMemoryExhausted(ILogger logger, string modelId, string tenant, string sessionId);

    [LoggerMessage(202, LogLevel.Warning, "This silo holds {Max} active sessions and none is idle; refusing session {Tenant}/{SessionId}")]
    public static partial void SessionLimitReached(ILogger logger, int max, string tenant, string sessionId);
}
