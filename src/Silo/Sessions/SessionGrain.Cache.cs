using KvCache.GpuWorker;
using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Sessions.Internal;
using KvCache.Silo.Storage;

namespace KvCache.Silo.Sessions;

// The session's cache in memory: loaded from snapshot + token log, advanced by the model, snapshotted and freed.
internal sealed partial class SessionGrain
{
    /// <summary>Loads the cache if it is not in memory: restores the latest usable snapshot, then replays the token
    /// log past it. Runs inside the session's turn.</summary>
    private async Task EnsureResidentAsync(CancellationToken cancellationToken)
    {
        if (_cache is not null)
        {
            return;
        }

        var record = _record ?? throw SessionException.NotFound(Key.SessionId);
        var model = _models.Get(record.Model)
            ?? throw new SessionException(SessionErrorCode.FailedPrecondition, $"Model '{record.Model}' is not served by silo {SiloName}.");
        await _resident.MakeRoomAsync(this);

        var started = _time.GetTimestamp();
        var tokenCount = await StoreCallAsync(() => _store.GetTokenCountAsync(Key, cancellationToken));
        _model = model;
        _scheduler = _models.Scheduler(model);
        _logits = new float[model.Config.VocabSize];
        _samplerScratch = new float[TokenSampler.ScratchLength(model.Config.VocabSize)];
        _tokenCount = tokenCount;
        try
        {
            _cache = await _resident.WithCacheMemoryAsync(model, this, () => Task.FromResult(model.CreateCache(record.Codec)));
            var position = await RestoreSnapshotAsync(tokenCount, cancellationToken);
            _logitsValid = position > 0;
            await ReplayAsync(position, tokenCount);
            // The address, not the name: a restarted silo reuses its name (a StatefulSet pod) but never its address.
            await StoreCallAsync(() => _store.SetResidentAsync(Key, _loads.LocalAddress.ToParsableString(), _epoch, cancellationToken));
            _resident.Add(this);
            if (tokenCount > 0)
            {
                _metrics.Restores.Record(_time.GetElapsedTime(started));
            }

            SessionGrainLog.Activated(_logger, Key.Tenant, Key.SessionId, tokenCount, _snapshotPosition, tokenCount - position);
        }
        catch (Exception ex)
        {
            // A failed load leaves nothing behind: the next call starts afresh.
            _cache?.Dispose();
            _cache = null;
            _model = null;
            if (ex is CacheCapacityException)
            {
                throw new SessionException(SessionErrorCode.ResourceExhausted, "No KV-cache memory is free to restore the session.");
            }

            throw;
        }
    }

    /// <summary>Restores the latest snapshot if it is usable; returns the position the cache now holds.</summary>
    private async Task<long> RestoreSnapshotAsync(long tokenCount, CancellationToken cancellationToken)
    {
        var model = _model!;
        int? restored;
        try
        {
            restored = await _resident.WithCacheMemoryAsync(model, this, () =>
                SnapshotReader.RestoreAsync(_store, Key, _cache!, model.Id, model.Fingerprint, _logits, cancellationToken).AsTask());
        }
        catch (Exception ex) when (ex is SnapshotMismatchException or SnapshotCorruptException)
        {
            // Refused, never used: the token log alone rebuilds the session.
            SessionGrainLog.SnapshotRefused(_logger, Key.Tenant, Key.SessionId, ex.Message);
            ResetCache();
            return 0;
        }
        catch (Exception ex) when (ex is not SessionException and not OperationCanceledException and not CacheCapacityException)
        {
            throw StoreUnavailable(ex);
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
        _cache!.Dispose();
        _cache = _model!.CreateCache(_record!.Codec);
        _snapshotPosition = -1;
    }

    private async Task ReplayAsync(long from, long to)
    {
        var chunk = new int[(int)Math.Min(_options.ReplayChunkTokens, Math.Max(1, to - from))];
        for (var position = from; position < to;)
        {
            var read = await StoreCallAsync(() => _store.ReadTokensAsync(Key, position, chunk, CancellationToken.None));
            if (read == 0)
            {
                throw new SessionException(SessionErrorCode.Unavailable, $"Token log of session '{Key.SessionId}' ended at {position}, expected {to} tokens.");
            }

            await ForwardAsync(chunk.AsMemory(0, read), logged: true);
            position += read;
            _logitsValid = true;
        }
    }

    /// <summary>
    /// Runs the model over tokens in the model's shared batched passes, spilling other idle sessions if the cache
    /// pool is full.
    /// </summary>
    /// <param name="logged">The tokens are already in the token log, so a failure leaves the cache behind it.</param>
    /// <param name="scores">Where the log-probability of each token after the first goes (prompt_logprobs).</param>
    private ValueTask ForwardAsync(ReadOnlyMemory<int> tokens, bool logged, Memory<float> scores = default)
    {
        // The decode hot path: no closure and no task unless the pool is full and other sessions must be spilled.
        try
        {
            return _scheduler!.ForwardAsync(_forward, _cache!, tokens, _logits, scores);
        }
        catch (CacheCapacityException)
        {
            return new ValueTask(ForwardAfterSpillingAsync(tokens, logged, scores));
        }
    }

    private async Task ForwardAfterSpillingAsync(ReadOnlyMemory<int> tokens, bool logged, Memory<float> scores)
    {
        var model = _model!;
        try
        {
            await _resident.WithCacheMemoryAsync(model, this, () =>
            {
                model.Reserve(_cache!, tokens.Span);
                return Task.FromResult(true);
            });
        }
        catch (CacheCapacityException)
        {
            if (logged)
            {
                await ReleaseCacheAsync(snapshot: false, "no cache memory for a logged token");
            }

            throw new SessionException(SessionErrorCode.ResourceExhausted, $"The KV-cache memory of model '{model.Id}' is full.");
        }

        await _scheduler!.ForwardAsync(_forward, _cache!, tokens, _logits, scores);
    }

    private async Task AppendToLogAsync(ReadOnlyMemory<int> tokens, TokenLogWriter writer)
    {
        try
        {
            // Not cancellable: a write that may or may not have happened would leave the log in doubt.
            await _fenced.AppendTokensAsync(Key, _tokenCount, tokens, writer, CancellationToken.None);
            Volatile.Write(ref _tokenCount, _tokenCount + tokens.Length);
        }
        catch (Exception ex)
        {
            // The cache may already hold these tokens: drop it so the next load rebuilds from the log.
            SessionGrainLog.TokenLogWriteFailed(_logger, Key.Tenant, Key.SessionId, ex.Message);
            if (ex is StaleEpochException)
            {
                await LoseOwnershipAsync();
                throw Moved();
            }

            await ReleaseCacheAsync(snapshot: false, "token log write failed");
            throw ex switch
            {
                SessionNotFoundException => SessionException.NotFound(Key.SessionId),
                TokenLogConflictException => new SessionException(SessionErrorCode.Unavailable, "The session was changed by another writer; retry."),
                _ => new SessionException(SessionErrorCode.Unavailable, "The spill store is unavailable."),
            };
        }
    }

    /// <summary>Frees the cache, snapshotting it first (unless the latest snapshot already holds it) when asked.</summary>
    private async Task ReleaseCacheAsync(bool snapshot, string reason)
    {
        if (_cache is not { } cache)
        {
            return;
        }

        try
        {
            if (snapshot && cache.Position > 0 && _snapshotPosition != cache.Position)
            {
                var model = _model!;
                var started = _time.GetTimestamp();
                await SnapshotWriter.WriteAsync(_fenced, Key, cache, model.Id, model.Fingerprint, _logits, CancellationToken.None);
                _metrics.Spills.Record(_time.GetElapsedTime(started));
                _snapshotPosition = cache.Position;
                SessionGrainLog.Spilled(_logger, Key.Tenant, Key.SessionId, cache.Position, cache.CacheBytes, reason);
            }
            else
            {
                SessionGrainLog.Freed(_logger, Key.Tenant, Key.SessionId, reason);
            }
        }
        catch (StaleEpochException)
        {
            // A newer activation owns the session: its state wins, this one's snapshot must not.
            SessionGrainLog.OwnershipLost(_logger, Key.Tenant, Key.SessionId);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The token log still holds everything; the next load replays what the snapshot lacks.
            SessionGrainLog.SnapshotFailed(_logger, ex, Key.Tenant, Key.SessionId);
        }
        finally
        {
            _cache = null;
            _model = null;
            cache.Dispose();
            _resident.Remove(this);
        }

        try
        {
            await _store.SetResidentAsync(Key, null, _epoch, CancellationToken.None);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Readers check the named silo's liveness; a stale name only makes a spilled session look active there.
        }
    }
}
