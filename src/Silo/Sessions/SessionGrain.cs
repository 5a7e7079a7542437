using KvCache.GpuWorker;
using KvCache.GpuWorker.Batching;
using KvCache.Silo.Hosting;
using KvCache.Silo.Models;
using KvCache.Silo.Observability;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions.Internal;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Sessions;

/// <summary>
/// One session's activation: its KV cache in this silo's memory while calls need it, rebuilt from the spill store.
/// </summary>
/// <remarks>
/// <para>The token log in the store is the truth: a token reaches the cache and the caller only after the log holds
/// it, and any failure that could leave the cache and the log apart drops the cache without a snapshot, so the next
/// load replays the log.</para>
/// <para>Each activation takes a new epoch from the store and every write it makes carries it, so a stale
/// activation (its silo declared dead, yet still running for a moment) has its writes refused and gives up.</para>
/// <para>Orleans runs calls one at a time, except <c>IAsyncEnumerable</c> methods: it drives those through an
/// <c>[AlwaysInterleave]</c> extension, one grain call per batch of items, so a Decode stream would interleave with
/// other calls between tokens. The session's <see cref="_gate"/> spans a whole call that changes the session, the
/// stream included.</para>
/// </remarks>
[CacheAwarePlacement]
internal sealed partial class SessionGrain : Grain, ISessionGrain, IResidentSessionGrain, IGrainMigrationParticipant
{
    private const string FullCodec = "full";

    /// <summary>Dehydration key: the position of the snapshot the source wrote for this migration.</summary>
    private const string MigratedSnapshotKey = "kvcache.migrated-snapshot";

    private readonly ISessionStore _store;
    private readonly ModelCatalog _models;
    private readonly ResidentSessions _resident;
    private readonly SiloLoads _loads;
    private readonly SiloMetrics _metrics;
    private readonly SiloOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<SessionGrain> _logger;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ForwardRequest _forward = new();
    private readonly int[] _oneToken = new int[1];

    private long _epoch;
    private FencedSessionStore _fenced = null!;
    private SessionRecord? _record;
    private ILanguageModel? _model;
    private BatchScheduler? _scheduler;
    private IKvCache? _cache;
    private float[] _logits = [];
    private float[] _samplerScratch = [];
    private bool _logitsValid;
    private long _tokenCount;
    private long _snapshotPosition = -1;
    private long _lastUsedTimestamp;
    private long? _migratedSnapshot;

    /// <summary>Set once the activation is going (deactivating, or handed to a migration target): calls that
    /// have not started yet are refused as <see cref="SessionErrorCode.Moved"/>, and a running Decode stops.</summary>
    private volatile bool _leaving;

    /// <summary>Migrations waiting for the session's turn: a running Decode with a request id yields to them after its
    /// current token (it goes on at the new owner) instead of holding the session until it ends.</summary>
    private int _pendingMigrations;

    public SessionGrain(
        ISessionStore store,
        ModelCatalog models,
        ResidentSessions resident,
        SiloLoads loads,
        SiloMetrics metrics,
        IOptions<SiloOptions> options,
        TimeProvider time,
        ILogger<SessionGrain> logger)
    {
        _store = store;
        _models = models;
        _resident = resident;
        _loads = loads;
        _metrics = metrics;
        _options = options.Value;
        _time = time;
        _logger = logger;
        Key = SessionGrainKey.Parse(this.GetPrimaryKeyString());
        _lastUsedTimestamp = time.GetTimestamp();
    }

    public SessionKey Key { get; }

    /// <summary>The model whose cache pool holds this session's cache; null while none is loaded.</summary>
    public ILanguageModel? Model => _model;

    public long LastUsedTimestamp => Volatile.Read(ref _lastUsedTimestamp);

    /// <summary>No call that changes the session is running or waiting.</summary>
    public bool IsIdle => _gate.CurrentCount == 1;

    private string SiloName => _loads.LocalSiloName;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _epoch = await StoreCallAsync(() => _store.TakeEpochAsync(Key, cancellationToken));
        _fenced = new FencedSessionStore(_store, Key, _epoch);
        _record = await StoreCallAsync(() => _store.GetAsync(Key, cancellationToken));
        _loads.SessionActivated();
        if (_migratedSnapshot is not null && _record is not null)
        {
            // A migrated session is in memory here before its first call, as it was on the source.
            await _gate.WaitAsync(cancellationToken);
            try
            {
                await EnsureResidentAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                SessionGrainLog.MigratedRestoreFailed(_logger, ex, Key.Tenant, Key.SessionId);
            }
            finally
            {
                _gate.Release();
            }
        }
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _leaving = true;
        _loads.SessionDeactivated();
        try
        {
            // A running Decode sees _leaving at its next token and ends.
            await _gate.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            SessionGrainLog.DeactivatedBusy(_logger, Key.Tenant, Key.SessionId);
            return;
        }

        try
        {
            await ReleaseCacheAsync(snapshot: true, reason.Description);
        }
        finally
        {
            _gate.Release();
        }
    }

    void IGrainMigrationParticipant.OnDehydrate(IDehydrationContext dehydrationContext)
    {
        if (_snapshotPosition >= 0)
        {
            dehydrationContext.TryAddValue(MigratedSnapshotKey, _snapshotPosition);
        }
    }

    void IGrainMigrationParticipant.OnRehydrate(IRehydrationContext rehydrationContext)
    {
        if (rehydrationContext.TryGetValue(MigratedSnapshotKey, out long position))
        {
            _migratedSnapshot = position;
        }
    }

    public async Task<SessionInfo> GetInfoAsync()
    {
        if (_leaving)
        {
            throw Moved();
        }

        if (TryGetResidentInfo() is { } info)
        {
            return info;
        }

        var state = await StoreCallAsync(() => _store.GetStateAsync(Key)) ?? throw SessionException.NotFound(Key.SessionId);
        // This activation owns the session and has not loaded it: spilled, whatever resident mark the store holds.
        return SessionInfos.Stored(state, _models, liveSiloName: static _ => null);
    }

    /// <summary>Session facts from memory; null while the cache is not loaded.</summary>
    private SessionInfo? TryGetResidentInfo()
    {
        var record = _record;
        var model = _model;
        var cache = _cache;
        if (record is null || model is null || cache is null)
        {
            return null;
        }

        var position = Volatile.Read(ref _tokenCount);
        return SessionInfos.Create(record, model, position, SessionResidency.Active, SiloName);
    }

    /// <summary>Enters the session's turn for a call that may change it.</summary>
    private async Task EnterAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        if (_leaving)
        {
            _gate.Release();
            throw Moved();
        }

        Volatile.Write(ref _lastUsedTimestamp, _time.GetTimestamp());
    }

    private void Exit()
    {
        Volatile.Write(ref _lastUsedTimestamp, _time.GetTimestamp());
        _gate.Release();
    }

    private SessionException Moved() =>
        new(SessionErrorCode.Moved, $"Session '{SessionInfos.Quote(Key.SessionId)}' moved to another activation; retry.");

    private SessionException StoreUnavailable(Exception cause)
    {
        SessionGrainLog.StoreFailed(_logger, cause, Key.Tenant, Key.SessionId);
        return new SessionException(SessionErrorCode.Unavailable, "The spill store is unavailable.");
    }

    /// <summary>Runs a store call, turning its failures into the session errors a caller can act on.</summary>
    private async Task<T> StoreCallAsync<T>(Func<ValueTask<T>> call)
    {
        try
        {
            return await call();
        }
        catch (SessionNotFoundException)
        {
            throw SessionException.NotFound(Key.SessionId);
        }
        catch (StaleEpochException)
        {
            await LoseOwnershipAsync();
            throw Moved();
        }
        catch (Exception ex) when (ex is not SessionException and not OperationCanceledException)
        {
            throw StoreUnavailable(ex);
        }
    }

    private async Task StoreCallAsync(Func<ValueTask> call) =>
        await StoreCallAsync(async () =>
        {
            await call();
            return true;
        });

    /// <summary>A newer activation owns the session: this one drops its cache unsnapshotted and goes.</summary>
    private async Task LoseOwnershipAsync()
    {
        SessionGrainLog.OwnershipLost(_logger, Key.Tenant, Key.SessionId);
        _leaving = true;
        await ReleaseCacheAsync(snapshot: false, "ownership lost");
        DeactivateOnIdle();
    }
}

internal static partial class SessionGrainLog
{
    [LoggerMessage(100, LogLevel.Information, "Activated session {Tenant}/{SessionId}: {Tokens} tokens, snapshot at {SnapshotPosition}, replayed {Replayed}")]
    public static partial void Activated(ILogger logger, string tenant, string sessionId, long tokens, long snapshotPosition, long replayed);

    [LoggerMessage(101, LogLevel.Information, "Spilled session {Tenant}/{SessionId} at position {Position} ({Bytes} bytes): {Reason}")]
    public static partial void Spilled(ILogger logger, string tenant, string sessionId, int position, long bytes, string reason);

    [LoggerMessage(102, LogLevel.Information, "Freed the cache of session {Tenant}/{SessionId}: {Reason}")]
    public static partial void Freed(ILogger logger, string tenant, string sessionId, string reason);

    [LoggerMessage(103, LogLevel.Error, "Refused the snapshot of session {Tenant}/{SessionId}, rebuilding it from the token log instead: {Reason}")]
    public static partial void SnapshotRefused(ILogger logger, string tenant, string sessionId, string reason);

    [LoggerMessage(104, LogLevel.Warning, "Could not snapshot session {Tenant}/{SessionId}; its token log still holds every token")]
    public static partial void SnapshotFailed(ILogger logger, Exception exception, string tenant, string sessionId);

    [LoggerMessage(105, LogLevel.Warning, "Token log write for session {Tenant}/{SessionId} failed, dropping its cache: {Reason}")]
    public static partial void TokenLogWriteFailed(ILogger logger, string tenant, string sessionId, string reason);

    [LoggerMessage(106, LogLevel.Warning, "Session {Tenant}/{SessionId} is owned by a newer activation (stale epoch); dropping its cache without a snapshot")]
    public static partial void OwnershipLost(ILogger logger, string tenant, string sessionId);

    [LoggerMessage(107, LogLevel.Error, "Session {Tenant}/{SessionId} arrived by migration but could not restore its cache; its next call loads it")]
    public static partial void MigratedRestoreFailed(ILogger logger, Exception exception, string tenant, string sessionId);

    [LoggerMessage(108, LogLevel.Warning, "Session {Tenant}/{SessionId} was still busy when its deactivation timed out; its token log holds every token")]
    public static partial void DeactivatedBusy(ILogger logger, string tenant, string sessionId);

    [LoggerMessage(109, LogLevel.Information, "Migrated session {Tenant}/{SessionId} to {Target} at position {Position}: {Bytes} cache bytes snapshotted in {Milliseconds:F1} ms")]
    public static partial void Migrated(ILogger logger, string tenant, string sessionId, string target, long position, long bytes, double milliseconds);

    [LoggerMessage(110, LogLevel.Warning, "A spill-store call for session {Tenant}/{SessionId} failed")]
    public static partial void StoreFailed(ILogger logger, Exception exception, string tenant, string sessionId);

    [LoggerMessage(111, LogLevel.Information, "Forked session {Tenant}/{SessionId} from session {SourceId} at position {Position}, with its snapshot: {SnapshotCopied}")]
    public static partial void Forked(ILogger logger, string tenant, string sessionId, string sourceId, long position, bool snapshotCopied);
}
