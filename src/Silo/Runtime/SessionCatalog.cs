using System.Collections.Concurrent;
using KvCache.GpuWorker;
using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Hosting;
using KvCache.Silo.Models;
using KvCache.Silo.Observability;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Runtime;

/// <summary>
/// The silo's activations (Orleans' Catalog): at most one <see cref="SessionGrain"/> per session, created on
/// first call, deactivated when idle, under memory pressure or at shutdown.
/// </summary>
internal sealed class SessionCatalog
{
    private readonly ConcurrentDictionary<SessionKey, SessionGrain> _grains = new();
    private readonly ILogger<SessionGrain> _grainLogger;
    private readonly ILogger<SessionCatalog> _logger;
    private readonly SiloOptions _options;

    public SessionCatalog(
        ISessionStore store,
        ModelCatalog models,
        ISiloStatusOracle oracle,
        IOptions<SiloOptions> options,
        TimeProvider time,
        ILogger<SessionCatalog> logger,
        ILogger<SessionGrain> grainLogger,
        SiloMetrics metrics)
    {
        Store = store;
        Models = models;
        Oracle = oracle;
        Time = time;
        _options = options.Value;
        _logger = logger;
        _grainLogger = grainLogger;
        Metrics = metrics;
        SiloName = _options.SiloName ?? Environment.MachineName;
    }

    public ISessionStore Store { get; }

    public ModelCatalog Models { get; }

    /// <summary>This silo's address and the liveness of others: who may take a session over.</summary>
    public ISiloStatusOracle Oracle { get; }

    public TimeProvider Time { get; }

    public SiloMetrics Metrics { get; }

    public string SiloName { get; }

    public int ReplayChunkTokens => _options.ReplayChunkTokens;

    public int ActiveCount => _grains.Count;

    public SessionGrain? TryGetActive(SessionKey key) => _grains.GetValueOrDefault(key);

    /// <summary>Calls the session's activation, activating it first if needed.</summary>
    public async Task<T> InvokeAsync<T>(SessionKey key, Func<SessionGrain, Task<T>> call)
    {
        while (true)
        {
            var grain = await GetOrCreateAsync(key);
            try
            {
                return await call(grain);
            }
            catch (GrainDeactivatedException)
            {
                // Deactivated between lookup and call: the next lookup creates a new activation.
            }
        }
    }

    /// <summary>Streams from the session's activation; retries only before the first item.</summary>
    public async IAsyncEnumerable<DecodedToken> InvokeStreamAsync(
        SessionKey key,
        Func<SessionGrain, IAsyncEnumerable<DecodedToken>> call)
    {
        while (true)
        {
            var grain = await GetOrCreateAsync(key);
            var enumerator = call(grain).GetAsyncEnumerator();
            try
            {
                bool hasFirst;
                try
                {
                    hasFirst = await enumerator.MoveNextAsync();
                }
                catch (GrainDeactivatedException)
                {
                    continue;
                }

                if (!hasFirst)
                {
                    yield break;
                }

                yield return enumerator.Current;
                while (await enumerator.MoveNextAsync())
                {
                    yield return enumerator.Current;
                }

                yield break;
            }
            finally
            {
                await enumerator.DisposeAsync();
            }
        }
    }

    /// <summary>The sessions active here now, least recently used first.</summary>
    public IReadOnlyList<SessionGrain> ActiveGrains() => _grains.Values.OrderBy(g => g.LastUsedTimestamp).ToArray();

    /// <summary>Live migration, on the target: activates the session here, taking it over from <paramref name="previous"/>.</summary>
    public Task<SessionInfo> AcceptAsync(SessionKey key, GrainAddress? previous, CancellationToken cancellationToken) =>
        InvokeAsync(key, grain => grain.AcceptAsync(previous, cancellationToken));

    public void Remove(SessionGrain grain) => _grains.TryRemove(new KeyValuePair<SessionKey, SessionGrain>(grain.Key, grain));

    /// <summary>
    /// Runs an action that takes cache memory; if the model's pool is full, spills least-recently-used idle
    /// sessions of that model one at a time and tries again.
    /// </summary>
    public async Task<T> WithCacheMemoryAsync<T>(ILanguageModel model, SessionGrain requester, Func<T> action)
    {
        while (true)
        {
            try
            {
                return action();
            }
            catch (CacheCapacityException)
            {
                if (!await TrySpillOneAsync(model, requester))
                {
                    throw;
                }
            }
        }
    }

    /// <inheritdoc cref="WithCacheMemoryAsync{T}(ILanguageModel, SessionGrain, Func{T})"/>
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
                if (!await TrySpillOneAsync(model, requester))
                {
                    throw;
                }
            }
        }
    }

    /// <summary>Spills sessions unused for longer than the idle timeout.</summary>
    public async Task<int> CollectIdleAsync()
    {
        var now = Time.GetTimestamp();
        var spilled = 0;
        foreach (var grain in _grains.Values)
        {
            if (Time.GetElapsedTime(grain.LastUsedTimestamp, now) >= _options.IdleTimeout
                && await grain.TryDeactivateAsync("idle"))
            {
                spilled++;
            }
        }

        return spilled;
    }

    /// <summary>Spills every session (graceful shutdown), waiting for running calls to finish.</summary>
    public async Task SpillAllAsync()
    {
        var grains = _grains.Values.ToArray();
        CatalogLog.SpillingAll(_logger, grains.Length);
        foreach (var grain in grains)
        {
            await grain.TryDeactivateAsync("silo shutting down", wait: true);
        }
    }

    private async ValueTask<SessionGrain> GetOrCreateAsync(SessionKey key)
    {
        if (_grains.TryGetValue(key, out var existing))
        {
            return existing;
        }

        // Room for one more activation: spill idle sessions, least recently used first; refuse when all are busy.
        while (_grains.Count >= _options.MaxActiveSessions)
        {
            if (!await SpillLeastRecentlyUsedAsync(model: null, requester: null))
            {
                CatalogLog.SessionLimitReached(_logger, _options.MaxActiveSessions, key.Tenant, key.SessionId);
                throw new SessionException(
                    SessionErrorCode.ResourceExhausted,
                    $"This silo holds {_options.MaxActiveSessions} active sessions (Silo:MaxActiveSessions) and none is idle; retry later.");
            }
        }

        return _grains.GetOrAdd(key, k => new SessionGrain(k, this, _grainLogger));
    }

    private async Task<bool> TrySpillOneAsync(ILanguageModel model, SessionGrain requester)
    {
        if (await SpillLeastRecentlyUsedAsync(model, requester))
        {
            return true;
        }

        CatalogLog.CacheMemoryExhausted(_logger, model.Id, requester.Key.Tenant, requester.Key.SessionId);
        return false;
    }

    private async Task<bool> SpillLeastRecentlyUsedAsync(ILanguageModel? model, SessionGrain? requester)
    {
        var candidates = _grains.Values
            .Where(g => g != requester && g.IsIdle && (model is null || g.Model == model))
            .OrderBy(g => g.LastUsedTimestamp);
        foreach (var grain in candidates)
        {
            if (await grain.TryDeactivateAsync("memory pressure"))
            {
                return true;
            }
        }

        return false;
    }
}

internal static partial class CatalogLog
{
    [LoggerMessage(200, LogLevel.Warning, "KV-cache memory of model {ModelId} is full and no idle session can be spilled; refusing session {Tenant}/{SessionId}")]
    public static partial void CacheMemoryExhausted(ILogger logger, string modelId, string tenant, string sessionId);

    [LoggerMessage(201, LogLevel.Information, "Spilling {Count} active sessions before shutdown")]
    public static partial void SpillingAll(ILogger logger, int count);

    [LoggerMessage(202, LogLevel.Warning, "This silo holds {Max} active sessions and none is idle; refusing session {Tenant}/{SessionId}")]
    public static partial void SessionLimitReached(ILogger logger, int max, string tenant, string sessionId);
}
