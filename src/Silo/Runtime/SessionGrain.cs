using System.Runtime.CompilerServices;
using KvCache.GpuWorker;
using KvCache.GpuWorker.Batching;
using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Models;
using KvCache.Silo.Observability;
using KvCache.Silo.Sessions;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Internal;
using Microsoft.Extensions.Logging;

namespace KvCache.Silo.Runtime;

/// <summary>
/// One session's activation: its KV cache in memory, rebuilt from the spill store on first use.
/// </summary>
/// <remarks>
/// Calls run one turn at a time (Orleans' non-reentrant grain). The token log in the store is the truth: a token
/// reaches the cache and the caller only after the log holds it, and any failure that could leave the cache
/// and the log apart deactivates the grain without a snapshot, so the next activation replays the log.
/// An activation registers in the store's grain directory and writes only with the epoch it got; once another
/// activation takes the session over, its writes are refused and it deactivates, reporting the session moved.
/// </remarks>
internal sealed class SessionGrain
{
    private enum Status
    {
        Created,
        Active,
        Deactivated,
    }

    private readonly SemaphoreSlim _turn = new(1, 1);
    private readonly SessionCatalog _catalog;
    private readonly ILogger _logger;
    private Status _status;
    private SessionRecord? _record;
    private ILanguageModel? _model;
    private IKvCache? _cache;
    private BatchScheduler? _scheduler;
    private readonly ForwardRequest _forward = new();
    private float[] _logits = [];
    private float[] _samplerScratch = [];
    private bool _logitsValid;
    private long _tokenCount;
    private long _snapshotPosition = -1;
    private long _lastUsedTimestamp;
    private GrainAddress? _address;
    private ISessionStore? _fencedStore;

    public SessionGrain(SessionKey key, SessionCatalog catalog, ILogger logger)
    {
        Key = key;
        _catalog = catalog;
        _logger = logger;
        _lastUsedTimestamp = catalog.Time.GetTimestamp();
    }

    public SessionKey Key { get; }

    public long LastUsedTimestamp => Volatile.Read(ref _lastUsedTimestamp);

    public ILanguageModel? Model => _model;

    public bool IsIdle => _turn.CurrentCount == 1;

    /// <summary>Fenced with this activation's epoch once it is registered.</summary>
    private ISessionStore Store => _fencedStore ?? _catalog.Store;

    /// <summary>Session facts without waiting for the current turn; null until activated.</summary>
    public SessionInfo? TryGetInfo()
    {
        var record = _record;
        var model = _model;
        if (_status != Status.Active || record is null || model is null)
        {
            return null;
        }

        var position = Volatile.Read(ref _tokenCount);
        return new SessionInfo(
            record.Key.SessionId,
            record.Model,
            record.Codec,
            position,
            SessionResidency.Active,
            _catalog.SiloName,
            model.CacheBytesAt(record.Codec, (int)position),
            model.BytesPerToken(record.Codec),
            model.Config.MaxPositionEmbeddings);
    }

    public async Task<AppendResult> AppendAsync(ReadOnlyMemory<int> tokens, int topLogprobs, CancellationToken cancellationToken)
    {
        await EnterTurnAsync(cancellationToken);
        try
        {
            var model = _model!;
            ValidateTokens(tokens.Span, model.Config.VocabSize);
            if (_tokenCount + tokens.Length > model.Config.MaxPositionEmbeddings)
            {
                throw new SessionException(
                    SessionErrorCode.FailedPrecondition,
                    $"Appending {tokens.Length} tokens at position {_tokenCount} would pass the model's {model.Config.MaxPositionEmbeddings} positions.");
            }

            await ForwardAsync(tokens);
            await AppendToLogAsync(tokens);
            _logitsValid = true;

            var top = new TokenLogprob[Math.Min(topLogprobs, model.Config.VocabSize)];
            var count = TokenSampler.TopLogprobs(_logits, top);
            return new AppendResult(_tokenCount, top.AsSpan(0, count).ToArray());
        }
        finally
        {
            ExitTurn();
        }
    }

    public async IAsyncEnumerable<DecodedToken> DecodeAsync(
        DecodeRequestOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // Counted from the call, not the turn: waiting decodes are the queue an autoscaler looks at.
        using var inFlight = _catalog.Metrics.TrackDecode();
        await EnterTurnAsync(cancellationToken);
        try
        {
            var model = _model!;
            var maxPosition = model.Config.MaxPositionEmbeddings;
            if (!_logitsValid)
            {
                throw new SessionException(SessionErrorCode.FailedPrecondition, "The session is empty: Append a prompt before Decode.");
            }

            var produced = 0;
            if (options.RequestId is { } requestId)
            {
                var start = await StoreCallAsync(() => Store.GetOrAddDecodeRequestAsync(Key, requestId, _tokenCount, CancellationToken.None));
                if (start > _tokenCount || start < 0)
                {
                    throw new SessionException(SessionErrorCode.FailedPrecondition, $"Request '{requestId}' started at position {start}, past the session's end.");
                }

                // Tokens this request already produced (before a crash or a lost stream) come back from the log.
                var replay = (int)Math.Min(_tokenCount - start, options.MaxTokens);
                if (replay > 0)
                {
                    var tokens = new int[replay];
                    var read = await StoreCallAsync(() => Store.ReadTokensAsync(Key, start, tokens, CancellationToken.None));
                    for (var i = 0; i < read; i++)
                    {
                        var position = start + i;
                        var finish = FinishOf(tokens[i], i + 1, position, options, maxPosition);
                        yield return new DecodedToken(tokens[i], position, float.NaN, finish, Replayed: true);
                        if (finish != FinishReason.None)
                        {
                            yield break;
                        }
                    }

                    produced = read;
                }
            }

            if (produced < options.MaxTokens && _tokenCount >= maxPosition)
            {
                throw new SessionException(SessionErrorCode.FailedPrecondition, $"The session is at the model's last position ({maxPosition}).");
            }

            var one = new int[1];
            while (produced < options.MaxTokens)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var position = _tokenCount;
                var sampled = TokenSampler.Sample(_logits, options.Sampling, position, _samplerScratch);
                one[0] = sampled.TokenId;
                await AppendToLogAsync(one);
                produced++;
                await ForwardAsync(one, logged: true);
                _catalog.Metrics.TokenDecoded();
                var finish = FinishOf(sampled.TokenId, produced, position, options, maxPosition);
                yield return new DecodedToken(sampled.TokenId, position, sampled.Logprob, finish, Replayed: false);
                if (finish != FinishReason.None)
                {
                    yield break;
                }
            }
        }
        finally
        {
            ExitTurn();
        }
    }

    /// <summary>Snapshots the cache to the spill store and frees it.</summary>
    public async Task<SessionInfo> SpillAsync(CancellationToken cancellationToken)
    {
        await EnterTurnAsync(cancellationToken);
        try
        {
            var info = TryGetInfo()! with { Residency = SessionResidency.Spilled, OwnerSilo = null };
            await DeactivateInTurnAsync(snapshot: true, "spill requested");
            return info;
        }
        finally
        {
            ExitTurn();
        }
    }

    public async Task DeleteAsync(CancellationToken cancellationToken)
    {
        await EnterTurnAsync(cancellationToken);
        try
        {
            await DeactivateInTurnAsync(snapshot: false, "deleted");
            await StoreCallAsync(() => Store.DeleteAsync(Key, CancellationToken.None));
        }
        finally
        {
            ExitTurn();
        }
    }

    /// <summary>
    /// Live migration, on the owner: in one turn (calls queue behind it), snapshots the cache into the spill store
    /// unless the latest snapshot already holds it, and lets <paramref name="accept"/> hand the session to the target,
    /// which takes the directory entry over from this activation with a new epoch. This activation then ends without
    /// unregistering: queued calls find the session owned elsewhere and are forwarded.
    /// </summary>
    /// <returns>The position and the compressed cache bytes handed over.</returns>
    /// <exception cref="GrainDeactivatedException">The session is not active here any more.</exception>
    public async Task<(long Position, long CacheBytes)> HandOffAsync(Func<GrainAddress, Task> accept, CancellationToken cancellationToken)
    {
        await EnterTurnAsync(cancellationToken);
        try
        {
            var cache = _cache!;
            var model = _model!;
            if (cache.Position > 0 && _snapshotPosition != cache.Position)
            {
                await StoreCallAsync(() => SnapshotWriter.WriteAsync(Store, Key, cache, model.Id, model.Fingerprint, _logits, CancellationToken.None));
                _snapshotPosition = cache.Position;
            }

            var handedOver = (_tokenCount, cache.CacheBytes);
            await accept(_address!);
            _address = null;
            await DeactivateInTurnAsync(snapshot: false, "migrated");
            return handedOver;
        }
        finally
        {
            ExitTurn();
        }
    }

    /// <summary>
    /// Live migration, on the target: activates now (restoring the snapshot the owner just wrote), taking the
    /// directory entry over from exactly <paramref name="previous"/>; null takes it over only from no owner or a dead one.
    /// </summary>
    public async Task<SessionInfo> AcceptAsync(GrainAddress? previous, CancellationToken cancellationToken)
    {
        await EnterTurnAsync(cancellationToken, previous);
        try
        {
            return TryGetInfo()!;
        }
        finally
        {
            ExitTurn();
        }
    }

    /// <summary>Deactivates if no call is running (idle collection, memory pressure, shutdown).</summary>
    public async Task<bool> TryDeactivateAsync(string reason, bool wait = false)
    {
        if (wait)
        {
            await _turn.WaitAsync();
        }
        else if (!_turn.Wait(0))
        {
            return false;
        }

        try
        {
            if (_status != Status.Active)
            {
                return false;
            }

            await DeactivateInTurnAsync(snapshot: true, reason);
            return true;
        }
        finally
        {
            _turn.Release();
        }
    }

    private async Task EnterTurnAsync(CancellationToken cancellationToken, GrainAddress? handOffFrom = null)
    {
        await _turn.WaitAsync(cancellationToken);
        try
        {
            if (_status == Status.Deactivated)
            {
                throw new GrainDeactivatedException();
            }

            if (_status == Status.Created)
            {
                await ActivateAsync(cancellationToken, handOffFrom);
            }

            Volatile.Write(ref _lastUsedTimestamp, _catalog.Time.GetTimestamp());
        }
        catch
        {
            _turn.Release();
            throw;
        }
    }

    private void ExitTurn()
    {
        Volatile.Write(ref _lastUsedTimestamp, _catalog.Time.GetTimestamp());
        _turn.Release();
    }

    private async Task ActivateAsync(CancellationToken cancellationToken, GrainAddress? handOffFrom)
    {
        try
        {
            var started = _catalog.Time.GetTimestamp();
            var record = await StoreCallAsync(() => Store.GetAsync(Key, cancellationToken))
                ?? throw SessionException.NotFound(Key.SessionId);
            var model = _catalog.Models.Get(record.Model)
                ?? throw new SessionException(SessionErrorCode.FailedPrecondition, $"Model '{record.Model}' is not served by silo {_catalog.SiloName}.");
            // Registered before the log is read: a write the previous owner makes after this is refused.
            await RegisterAsync(cancellationToken, handOffFrom);
            var tokenCount = await StoreCallAsync(() => Store.GetTokenCountAsync(Key, cancellationToken));

            _record = record;
            _model = model;
            _scheduler = _catalog.Models.Scheduler(model);
            _logits = new float[model.Config.VocabSize];
            _samplerScratch = new float[TokenSampler.ScratchLength(model.Config.VocabSize)];
            _tokenCount = tokenCount;
            _cache = await _catalog.WithCacheMemoryAsync(model, this, () => model.CreateCache(record.Codec));

            var position = await RestoreSnapshotAsync(tokenCount, cancellationToken);
            _logitsValid = position > 0;
            await ReplayAsync(position, tokenCount);
            _status = Status.Active;
            if (tokenCount > 0)
            {
                _catalog.Metrics.Restores.Record(_catalog.Time.GetElapsedTime(started));
            }

            SessionGrainLog.Activated(_logger, Key.Tenant, Key.SessionId, tokenCount, _snapshotPosition, tokenCount - position);
        }
        catch (Exception ex)
        {
            // A failed activation leaves nothing behind; the catalog drops this grain and the next call starts fresh.
            _cache?.Dispose();
            _cache = null;
            _status = Status.Deactivated;
            _catalog.Remove(this);
            await UnregisterAsync();
            if (ex is CacheCapacityException)
            {
                throw new SessionException(SessionErrorCode.ResourceExhausted, "No KV-cache memory is free to restore the session.", ex);
            }

            throw;
        }
    }

    /// <summary>
    /// Claims the session in the directory; every write from here on carries the epoch it got. An entry of this
    /// silo (an activation being deactivated) or of a silo that is not live is taken over; an entry of another
    /// live silo means the session is not this silo's: <see cref="SessionErrorCode.NotOwner"/> names the owner.
    /// A hand-off (<paramref name="handOffFrom"/>) takes over exactly that activation's entry, live or not.
    /// </summary>
    private async Task RegisterAsync(CancellationToken cancellationToken, GrainAddress? handOffFrom)
    {
        var directory = _catalog.Store.Directory;
        var oracle = _catalog.Oracle;
        var address = new GrainAddress(Key, oracle.SiloAddress, ActivationId.NewId());
        var current = await StoreCallAsync(() => directory.LookupAsync(Key, cancellationToken));
        if (handOffFrom is not null && !handOffFrom.Matches(current))
        {
            throw new SessionException(SessionErrorCode.Unavailable, $"Session '{Key.SessionId}' changed owner before the hand-off; retry.");
        }

        if (handOffFrom is null && current is not null && current.SiloAddress != address.SiloAddress
            && await StoreCallAsync(() => oracle.IsLiveAsync(current.SiloAddress, cancellationToken)))
        {
            throw SessionException.NotOwner(Key.SessionId, current.SiloAddress);
        }

        var registered = await StoreCallAsync(() => directory.RegisterAsync(address, current, cancellationToken));
        if (!registered.Matches(address))
        {
            // Lost the race to another activation, which registered just now.
            throw SessionException.NotOwner(Key.SessionId, registered.SiloAddress);
        }

        _address = registered;
        _fencedStore = new FencedSessionStore(_catalog.Store, Key, registered.Epoch);
    }

    private async Task UnregisterAsync()
    {
        if (_address is not { } address)
        {
            return;
        }

        _address = null;
        try
        {
            await _catalog.Store.Directory.UnregisterAsync(address, CancellationToken.None);
        }
        catch (Exception ex)
        {
            // The entry stays until the next activation takes it over; the epoch still fences this one.
            SessionGrainLog.UnregisterFailed(_logger, ex, Key.Tenant, Key.SessionId);
        }
    }

    private SessionException Moved(Exception? inner) =>
        new(SessionErrorCode.Unavailable, $"Session '{Key.SessionId}' moved: another activation owns it now; retry.", inner);

    /// <summary>Restores the latest snapshot if it is usable; returns the position the cache now holds.</summary>
    private async Task<long> RestoreSnapshotAsync(long tokenCount, CancellationToken cancellationToken)
    {
        var model = _model!;
        int? restored;
        try
        {
            restored = await _catalog.WithCacheMemoryAsync(model, this, () =>
                SnapshotReader.RestoreAsync(Store, Key, _cache!, model.Id, model.Fingerprint, _logits, cancellationToken).AsTask());
        }
        catch (Exception ex) when (ex is SnapshotMismatchException or SnapshotCorruptException)
        {
            // Refused, never used: the token log alone rebuilds the session.
            SessionGrainLog.SnapshotRefused(_logger, Key.Tenant, Key.SessionId, ex.Message);
            ResetCache();
            return 0;
        }

        if (restored is not { } position)
        {
            return 0;
        }

        if (position > tokenCount)
        {
            SessionGrainLog.SnapshotRefused(_logger, Key.Tenant, Key.SessionId, $"snapshot at position {position} is past the token log's {tokenCount} tokens");
            ResetCache();
            return 0;
        }

        _snapshotPosition = position;
        return position;
    }

    private void ResetCache()
    {
        var model = _model!;
        _cache!.Dispose();
        _cache = model.CreateCache(_record!.Codec);
        _snapshotPosition = -1;
    }

    private async Task ReplayAsync(long from, long to)
    {
        var chunk = new int[(int)Math.Min(_catalog.ReplayChunkTokens, Math.Max(1, to - from))];
        for (var position = from; position < to;)
        {
            var read = await StoreCallAsync(() => Store.ReadTokensAsync(Key, position, chunk, CancellationToken.None));
            if (read == 0)
            {
                throw new SessionException(SessionErrorCode.Unavailable, $"Token log of session '{Key.SessionId}' ended at {position}, expected {to} tokens.");
            }

            await ForwardAsync(chunk.AsMemory(0, read));
            position += read;
            _logitsValid = true;
        }
    }

    /// <summary>
    /// Runs the model over tokens in the model's shared batched passes, spilling other idle sessions if the cache
    /// pool is full.
    /// </summary>
    /// <param name="logged">The tokens are already in the token log, so a failure leaves the cache behind it.</param>
    private ValueTask ForwardAsync(ReadOnlyMemory<int> tokens, bool logged = false)
    {
        // The decode hot path: no closure and no task unless the pool is full and other sessions must be spilled.
        try
        {
            return _scheduler!.ForwardAsync(_forward, _cache!, tokens, _logits);
        }
        catch (CacheCapacityException)
        {
            return new ValueTask(ForwardAfterSpillingAsync(tokens, logged));
        }
    }

    private async Task ForwardAfterSpillingAsync(ReadOnlyMemory<int> tokens, bool logged)
    {
        var model = _model!;
        try
        {
            await _catalog.WithCacheMemoryAsync(model, this, () =>
            {
                model.Reserve(_cache!, tokens.Span);
                return 0;
            });
        }
        catch (CacheCapacityException ex)
        {
            if (logged)
            {
                await DeactivateInTurnAsync(snapshot: false, "no cache memory for a logged token");
            }

            throw new SessionException(SessionErrorCode.ResourceExhausted, $"The KV-cache memory of model '{model.Id}' is full.", ex);
        }

        await _scheduler!.ForwardAsync(_forward, _cache!, tokens, _logits);
    }

    private async Task AppendToLogAsync(ReadOnlyMemory<int> tokens)
    {
        try
        {
            // Not cancellable: a write that may or may not have happened would leave the log in doubt.
            await Store.AppendTokensAsync(Key, _tokenCount, tokens, CancellationToken.None);
            Volatile.Write(ref _tokenCount, _tokenCount + tokens.Length);
        }
        catch (Exception ex)
        {
            // The cache may already hold these tokens: drop it so the next activation rebuilds from the log.
            SessionGrainLog.TokenLogWriteFailed(_logger, Key.Tenant, Key.SessionId, ex.Message);
            await DeactivateInTurnAsync(snapshot: false, "token log write failed");
            throw ex switch
            {
                SessionNotFoundException => SessionException.NotFound(Key.SessionId),
                StaleEpochException => Moved(ex),
                TokenLogConflictException => new SessionException(SessionErrorCode.Unavailable, "The session was changed by another writer; retry.", ex),
                _ => new SessionException(SessionErrorCode.Unavailable, "The spill store is unavailable.", ex),
            };
        }
    }

    private async Task DeactivateInTurnAsync(bool snapshot, string reason)
    {
        if (_status != Status.Active)
        {
            return;
        }

        _status = Status.Deactivated;
        _catalog.Remove(this);
        try
        {
            if (snapshot && _cache is { Position: > 0 } cache && _snapshotPosition != cache.Position)
            {
                var model = _model!;
                var started = _catalog.Time.GetTimestamp();
                await SnapshotWriter.WriteAsync(Store, Key, cache, model.Id, model.Fingerprint, _logits, CancellationToken.None);
                _catalog.Metrics.Spills.Record(_catalog.Time.GetElapsedTime(started));
                _snapshotPosition = cache.Position;
                SessionGrainLog.Spilled(_logger, Key.Tenant, Key.SessionId, cache.Position, cache.CacheBytes, reason);
            }
            else
            {
                SessionGrainLog.Deactivated(_logger, Key.Tenant, Key.SessionId, reason);
            }
        }
        catch (StaleEpochException)
        {
            // Another activation owns the session: its state wins, this one's snapshot must not.
            SessionGrainLog.OwnershipLost(_logger, Key.Tenant, Key.SessionId);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The token log still holds everything; the next activation replays what the snapshot lacks.
            SessionGrainLog.SnapshotFailed(_logger, ex, Key.Tenant, Key.SessionId);
        }
        finally
        {
            _cache?.Dispose();
            _cache = null;
            await UnregisterAsync();
        }
    }

    private static FinishReason FinishOf(int token, int produced, long position, DecodeRequestOptions options, int maxPosition)
    {
        if (options.StopTokenIds.Contains(token))
        {
            return FinishReason.StopToken;
        }

        if (produced >= options.MaxTokens)
        {
            return FinishReason.MaxTokens;
        }

        return position + 1 >= maxPosition ? FinishReason.MaxPosition : FinishReason.None;
    }

    private static void ValidateTokens(ReadOnlySpan<int> tokens, int vocabSize)
    {
        if (tokens.IsEmpty)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, "token_ids is empty.");
        }

        for (var i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)vocabSize)
            {
                throw new SessionException(
                    SessionErrorCode.InvalidArgument,
                    $"token_ids[{i}] = {tokens[i]} is outside the model's vocabulary [0, {vocabSize}).");
            }
        }
    }

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
        catch (StaleEpochException ex)
        {
            SessionGrainLog.OwnershipLost(_logger, Key.Tenant, Key.SessionId);
            await DeactivateInTurnAsync(snapshot: false, "ownership lost");
            throw Moved(ex);
        }
        catch (Exception ex) when (ex is not SessionException and not OperationCanceledException)
        {
            throw new SessionException(SessionErrorCode.Unavailable, "The spill store is unavailable.", ex);
        }
    }
}

/// <summary>The grain was deactivated between lookup and call; the catalog retries on a new activation.</summary>
internal sealed class GrainDeactivatedException : Exception;

internal static partial class SessionGrainLog
{
    [LoggerMessage(100, LogLevel.Information, "Activated session {Tenant}/{SessionId}: {Tokens} tokens, snapshot at {SnapshotPosition}, replayed {Replayed}")]
    public static partial void Activated(ILogger logger, string tenant, string sessionId, long tokens, long snapshotPosition, long replayed);

    [LoggerMessage(101, LogLevel.Information, "Spilled session {Tenant}/{SessionId} at position {Position} ({Bytes} bytes): {Reason}")]
    public static partial void Spilled(ILogger logger, string tenant, string sessionId, int position, long bytes, string reason);

    [LoggerMessage(102, LogLevel.Information, "Deactivated session {Tenant}/{SessionId}: {Reason}")]
    public static partial void Deactivated(ILogger logger, string tenant, string sessionId, string reason);

    [LoggerMessage(103, LogLevel.Error, "Refused the snapshot of session {Tenant}/{SessionId}, rebuilding it from the token log instead: {Reason}")]
    public static partial void SnapshotRefused(ILogger logger, string tenant, string sessionId, string reason);

    [LoggerMessage(104, LogLevel.Warning, "Could not snapshot session {Tenant}/{SessionId}; its token log still holds every token")]
    public static partial void SnapshotFailed(ILogger logger, Exception exception, string tenant, string sessionId);

    [LoggerMessage(105, LogLevel.Warning, "Token log write for session {Tenant}/{SessionId} failed, dropping its cache: {Reason}")]
    public static partial void TokenLogWriteFailed(ILogger logger, string tenant, string sessionId, string reason);

    [LoggerMessage(106, LogLevel.Warning, "Session {Tenant}/{SessionId} is owned by another activation (stale epoch); deactivating without a snapshot")]
    public static partial void OwnershipLost(ILogger logger, string tenant, string sessionId);

    [LoggerMessage(107, LogLevel.Warning, "Could not remove the directory entry of session {Tenant}/{SessionId}; the next activation takes it over")]
    public static partial void UnregisterFailed(ILogger logger, Exception exception, string tenant, string sessionId);
}
