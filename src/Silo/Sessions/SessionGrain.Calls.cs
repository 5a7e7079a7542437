using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using KvCache.Contracts.Snapshots;
using KvCache.GpuWorker;
using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Sessions.Internal;
using KvCache.Silo.Storage;
using KvCache.Text;
using Orleans.Runtime.Placement;

namespace KvCache.Silo.Sessions;

// The session's calls.
internal sealed partial class SessionGrain
{
    public async Task<SessionInfo> CreateAsync(string? model, string? codec, CancellationToken cancellationToken)
    {
        await EnterAsync(cancellationToken);
        try
        {
            var languageModel = string.IsNullOrEmpty(model)
                ? _models.Default
                : _models.Get(model) ?? throw new SessionException(SessionErrorCode.InvalidArgument, $"Unknown model '{SessionInfos.Quote(model)}'; ListModels names the served ones.");
            codec = string.IsNullOrEmpty(codec) ? FullCodec : codec;
            if (!languageModel.Codecs.Contains(codec))
            {
                throw new SessionException(
                    SessionErrorCode.InvalidArgument,
                    $"Model '{languageModel.Id}' has no codec '{SessionInfos.Quote(codec)}'; it has: {string.Join(", ", languageModel.Codecs)}.");
            }

            var record = new SessionRecord(Key, languageModel.Id, codec, _time.GetUtcNow());
            if (_record is not null || !await StoreCallAsync(() => _store.TryCreateAsync(record, cancellationToken)))
            {
                throw new SessionException(SessionErrorCode.AlreadyExists, $"Session '{SessionInfos.Quote(Key.SessionId)}' already exists.");
            }

            _record = record;
            return SessionInfos.Create(record, languageModel, 0, SessionResidency.Spilled, ownerSilo: null);
        }
        finally
        {
            Exit();
        }
    }

    public async Task<AppendResult> AppendAsync(AppendInput input, CancellationToken cancellationToken)
    {
        await EnterAsync(cancellationToken);
        try
        {
            var fingerprint = RequestRecords.Fingerprint(input);
            if (input.RequestId is { } repeated && await RecordedAppendAsync(repeated, fingerprint, cancellationToken) is { } recorded)
            {
                return recorded;
            }

            if (input.ExpectedPosition is { } expected)
            {
                // The position is known without loading the cache: a refused turn costs no restore.
                var position = _cache is null ? await StoreCallAsync(() => _store.GetTokenCountAsync(Key, cancellationToken)) : _tokenCount;
                if (position != expected)
                {
                    throw new SessionException(
                        SessionErrorCode.Aborted,
                        $"Session '{SessionInfos.Quote(Key.SessionId)}' is at position {position}, not the expected {expected}; nothing was appended.");
                }
            }

            await EnsureResidentAsync(cancellationToken);
            var model = _model!;
            var tokens = await TokensOfAsync(input, model);
            ValidateTokens(tokens, model.Config.VocabSize);
            if (tokens.Length > _options.MaxAppendTokens)
            {
                throw new SessionException(SessionErrorCode.InvalidArgument, $"The input is {tokens.Length} tokens; the limit is {_options.MaxAppendTokens}.");
            }

            if (_tokenCount + tokens.Length > model.Config.MaxPositionEmbeddings)
            {
                throw new SessionException(
                    SessionErrorCode.FailedPrecondition,
                    $"Appending {tokens.Length} tokens at position {_tokenCount} would pass the model's {model.Config.MaxPositionEmbeddings} positions.");
            }

            // The first token is scored by the logits the session holds now, the others by the forward itself.
            var first = input.PromptLogprobs && _logitsValid ? TokenSampler.Logprob(_logits, tokens[0]) : float.NaN;
            var scores = input.PromptLogprobs ? new float[tokens.Length - 1] : null;
            await ForwardAsync(tokens, logged: false, scores);
            var top = new TokenLogprob[Math.Min(input.TopLogprobs, model.Config.VocabSize)];
            var count = TokenSampler.TopLogprobs(_logits, top);
            var prompt = scores is null ? [] : new TokenLogprob[tokens.Length];
            for (var i = 0; i < prompt.Length; i++)
            {
                prompt[i] = new TokenLogprob(tokens[i], i == 0 ? first : scores![i - 1]);
            }

            var result = new AppendResult(_tokenCount + tokens.Length, top[..count], prompt, tokens.Length, Replayed: false);

            // The result is recorded with the tokens, in one atomic write: a retry finds both or neither.
            await AppendToLogAsync(
                tokens,
                input.RequestId is { } requestId ? TokenLogWriter.Append(requestId, RequestRecords.EncodeAppend(fingerprint, result)) : TokenLogWriter.None);
            _logitsValid = true;
            return result;
        }
        finally
        {
            Exit();
        }
    }

    public async Task<SessionInfo> ForkAsync(string sourceSessionId, long position, CancellationToken cancellationToken)
    {
        await EnterAsync(cancellationToken);
        try
        {
            var source = new SessionKey(Key.Tenant, sourceSessionId);
            var made = _record is null
                ? await StoreCallAsync(async () =>
                {
                    try
                    {
                        var snapshot = await CoveringSnapshotAsync(_store, source, position, cancellationToken);
                        return await _fenced.TryForkAsync(source, position, snapshot, Key, _time.GetUtcNow(), cancellationToken);
                    }
                    catch (SessionNotFoundException)
                    {
                        throw SessionException.NotFound(sourceSessionId);
                    }
                    catch (TokenLogConflictException e)
                    {
                        throw new SessionException(
                            SessionErrorCode.FailedPrecondition,
                            $"Session '{SessionInfos.Quote(sourceSessionId)}' holds {e.Actual} tokens, fewer than the {position} to fork.");
                    }
                })
                : null;
            if (made is null)
            {
                throw new SessionException(SessionErrorCode.AlreadyExists, $"Session '{SessionInfos.Quote(Key.SessionId)}' already exists.");
            }

            _record = made.Record;
            SessionGrainLog.Forked(_logger, Key.Tenant, Key.SessionId, sourceSessionId, position, made.SnapshotCopied);
            return SessionInfos.Stored(new SessionState(made.Record, position, null), _models, liveSiloName: static _ => null);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>The id of <paramref name="source"/>'s committed snapshot if it was taken at or before
    /// <paramref name="position"/>, so that a fork there may start from it; else null.</summary>
    private static async Task<long?> CoveringSnapshotAsync(ISessionStore store, SessionKey source, long position, CancellationToken cancellationToken)
    {
        if (await store.GetSnapshotAsync(source, cancellationToken) is not { } stored)
        {
            return null;
        }

        try
        {
            return SnapshotHeader.Decode(stored.Header.Span).Position <= position ? stored.SnapshotId : null;
        }
        catch (SnapshotFormatException)
        {
            // A restore would refuse it too: the fork replays its whole log instead.
            return null;
        }
    }

    /// <summary>The tokens an Append adds: its token ids, its text tokenized, or its messages rendered with the chat
    /// template after what the session holds (<see cref="TextModel.EncodeMessages"/>).</summary>
    private async Task<int[]> TokensOfAsync(AppendInput input, ILanguageModel model)
    {
        if (input.TokenIds.Length > 0)
        {
            return input.TokenIds;
        }

        var text = _models.Text(model);
        if (text.Tokenizer is null)
        {
            throw new SessionException(
                SessionErrorCode.FailedPrecondition,
                $"Model '{model.Id}' has no tokenizer (tokenizer.model or tokenizer.json in its directory): Append token_ids.");
        }

        if (!string.IsNullOrEmpty(input.Text))
        {
            return text.EncodeText(input.Text);
        }

        if (text.Template is null)
        {
            throw new SessionException(
                SessionErrorCode.FailedPrecondition,
                $"Model '{model.Id}' has no chat template (tokenizer_config.json chat_template, or Models:Text:{model.Id}:ChatTemplate): Append text or token_ids.");
        }

        int? last = null;
        if (_tokenCount > 0)
        {
            var buffer = new int[1];
            await StoreCallAsync(() => _store.ReadTokensAsync(Key, _tokenCount - 1, buffer, CancellationToken.None));
            last = buffer[0];
        }

        try
        {
            return text.EncodeMessages([.. input.Messages.Select(m => new ChatMessage(m.Role, m.Content))], last);
        }
        catch (ChatTemplateException ex)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, ex.Message);
        }
    }

    /// <summary>What an earlier Append with <paramref name="requestId"/> returned, if one was applied.</summary>
    private async Task<AppendResult?> RecordedAppendAsync(string requestId, ulong fingerprint, CancellationToken cancellationToken)
    {
        _ = _record ?? throw SessionException.NotFound(Key.SessionId);
        if (await StoreCallAsync(() => _store.GetAppendRequestAsync(Key, requestId, cancellationToken)) is not { } bytes)
        {
            return null;
        }

        var (recorded, result) = RequestRecords.DecodeAppend(bytes.Span);
        return recorded == fingerprint
            ? result
            : throw new SessionException(
                SessionErrorCode.InvalidArgument,
                $"Request '{SessionInfos.Quote(requestId)}' was an Append of other input, top_logprobs or prompt_logprobs; a request id names one request.");
    }

    /// <remarks>
    /// The tokens are produced one step ahead of the stream: Orleans fetches a stream's items one grain call at a time,
    /// so the next token is computed while the last one travels to the caller. A caller that stops reading leaves at
    /// most two tokens past the last one it received in the session (durable, as every produced token).
    /// </remarks>
    public async IAsyncEnumerable<DecodedToken> DecodeAsync(
        DecodeRequestOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var ahead = Channel.CreateBounded<DecodedToken>(new BoundedChannelOptions(1) { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var producer = DecodeIntoAsync(options, ahead.Writer, stop.Token);
        try
        {
            while (await ahead.Reader.WaitToReadAsync(CancellationToken.None))
            {
                while (ahead.Reader.TryRead(out var token))
                {
                    yield return token;
                }
            }
        }
        finally
        {
            await stop.CancelAsync();
            await producer;
        }
    }

    /// <summary>Runs a Decode, writing each token once it is durable; completes <paramref name="output"/> with the
    /// failure, if any.</summary>
    private async Task DecodeIntoAsync(DecodeRequestOptions options, ChannelWriter<DecodedToken> output, CancellationToken cancellationToken)
    {
        Exception? failure = null;
        try
        {
            await DecodeTurnAsync(options, output, cancellationToken);
        }
        catch (Exception ex)
        {
            failure = ex;
        }
        finally
        {
            output.TryComplete(failure);
        }
    }

    private async Task DecodeTurnAsync(DecodeRequestOptions options, ChannelWriter<DecodedToken> output, CancellationToken cancellationToken)
    {
        // Counted from the call, not the turn: waiting decodes are the queue an autoscaler looks at.
        using var inFlight = _metrics.TrackDecode();
        await EnterAsync(cancellationToken);
        try
        {
            await EnsureResidentAsync(cancellationToken);
            var model = _model!;
            var maxPosition = model.Config.MaxPositionEmbeddings;
            if (!_logitsValid)
            {
                throw new SessionException(SessionErrorCode.FailedPrecondition, "The session is empty: Append a prompt before Decode.");
            }

            var text = _models.Text(model);
            if (options.Stop is { Length: > 0 } && text.Tokenizer is null)
            {
                throw new SessionException(SessionErrorCode.FailedPrecondition, $"Model '{model.Id}' has no tokenizer: stop strings need one (stop_token_ids do not).");
            }

            var turn = new DecodeText(options, text, maxPosition);
            var produced = 0;
            var writer = TokenLogWriter.None;
            if (options.RequestId is { } requestId)
            {
                writer = TokenLogWriter.Decode(requestId);
                var fingerprint = RequestRecords.Fingerprint(options);
                var request = await StoreCallAsync(() => _fenced.GetOrAddDecodeRequestAsync(Key, requestId, _tokenCount, fingerprint, CancellationToken.None));
                produced = await ReplayRequestAsync(requestId, fingerprint, request, options, turn, output, cancellationToken);
                if (produced < 0)
                {
                    return;
                }
            }

            if (produced < options.MaxTokens && _tokenCount >= maxPosition)
            {
                throw new SessionException(SessionErrorCode.FailedPrecondition, $"The session is at the model's last position ({maxPosition}).");
            }

            while (produced < options.MaxTokens)
            {
                cancellationToken.ThrowIfCancellationRequested();
                // A resumable Decode yields to a waiting migration and goes on at the new owner; one without a
                // request id could not, so the migration waits for it to end.
                if (_leaving || (options.RequestId is not null && Volatile.Read(ref _pendingMigrations) > 0))
                {
                    throw Moved();
                }

                var position = _tokenCount;
                var sampled = TokenSampler.Sample(_logits, options.Sampling, position, _samplerScratch);
                _oneToken[0] = sampled.TokenId;
                await AppendToLogAsync(_oneToken, writer);
                produced++;
                await ForwardAsync(_oneToken, logged: true);
                _metrics.TokenDecoded();
                var token = turn.Next(sampled.TokenId, position, sampled.Logprob, produced, replayed: false);
                await output.WriteAsync(token, cancellationToken);
                if (token.Finish != FinishReason.None)
                {
                    return;
                }
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>
    /// Replays what an earlier attempt of the request produced, from the token log; returns how many tokens it had
    /// produced, or -1 when it had finished (the replay is the whole answer).
    /// </summary>
    private async Task<int> ReplayRequestAsync(
        string requestId,
        string fingerprint,
        DecodeRequestRecord request,
        DecodeRequestOptions options,
        DecodeText turn,
        ChannelWriter<DecodedToken> output,
        CancellationToken cancellationToken)
    {
        var quoted = SessionInfos.Quote(requestId);
        if (request.Fingerprint is { } recorded && recorded != fingerprint)
        {
            throw new SessionException(
                SessionErrorCode.InvalidArgument,
                $"Request '{quoted}' was a Decode with other parameters (max_tokens, sampling, stop tokens or strings, ignore_eos); a request id names one request.");
        }

        // Its tokens run from its start to where another writer followed it, or to the log's end while it is the writer.
        var end = request.End ?? _tokenCount;
        if (request.Start < 0 || request.Start > end || end > _tokenCount)
        {
            throw new SessionException(SessionErrorCode.FailedPrecondition, $"Request '{quoted}' started at position {request.Start}, past the session's end.");
        }

        var tokens = new int[(int)Math.Min(end - request.Start, options.MaxTokens)];
        var read = tokens.Length == 0 ? 0 : await StoreCallAsync(() => _store.ReadTokensAsync(Key, request.Start, tokens, CancellationToken.None));

        // The replayed events are rebuilt as the first attempt made them (text pieces and stop strings included), up to
        // the one that finished the request, if any.
        var events = new List<DecodedToken>(read);
        for (var i = 0; i < read && (events.Count == 0 || events[^1].Finish == FinishReason.None); i++)
        {
            events.Add(turn.Next(tokens[i], request.Start + i, float.NaN, i + 1, replayed: true));
        }

        var finished = events.Count > 0 && events[^1].Finish != FinishReason.None;
        if (!finished && request.End is not null)
        {
            // Going on would put its tokens after another request's: they would no longer be this request's own.
            throw new SessionException(
                SessionErrorCode.FailedPrecondition,
                $"Request '{quoted}' stopped after {read} tokens and the session has moved on since; send the next Decode with a new request_id.");
        }

        foreach (var token in events)
        {
            await output.WriteAsync(token, cancellationToken);
        }

        return finished ? -1 : read;
    }

    public async Task<SessionInfo> SpillAsync(CancellationToken cancellationToken)
    {
        await EnterAsync(cancellationToken);
        try
        {
            var info = TryGetResidentInfo() is { } resident
                ? resident with { Residency = SessionResidency.Spilled, OwnerSilo = null }
                : await GetInfoAsync();
            await ReleaseCacheAsync(snapshot: true, "spill requested");
            _leaving = true;
            DeactivateOnIdle();
            return info;
        }
        finally
        {
            Exit();
        }
    }

    public async Task DeleteAsync(CancellationToken cancellationToken)
    {
        await EnterAsync(cancellationToken);
        try
        {
            await ReleaseCacheAsync(snapshot: false, "deleted");
            var deleted = await StoreCallAsync(() => _store.DeleteAsync(Key, cancellationToken));
            _record = null;
            _leaving = true;
            DeactivateOnIdle();
            if (!deleted)
            {
                throw SessionException.NotFound(Key.SessionId);
            }
        }
        finally
        {
            Exit();
        }
    }

    public async Task<MigrationResult> MigrateAsync(string? targetSilo, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _pendingMigrations);
        try
        {
            await EnterAsync(cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _pendingMigrations);
        }

        try
        {
            if (_record is null)
            {
                throw SessionException.NotFound(Key.SessionId);
            }

            var target = _loads.ResolveMigrationTarget(targetSilo);
            var started = Stopwatch.GetTimestamp();
            var (from, position, bytes) = ("", 0L, 0L);
            if (_cache is { } cache)
            {
                // The bytes go out of band, through the spill store: Orleans' migration message carries only where they are.
                if (cache.Position > 0 && _snapshotPosition != cache.Position)
                {
                    var model = _model!;
                    await StoreCallAsync(async () => await SnapshotWriter.WriteAsync(_fenced, Key, cache, model.Id, model.Fingerprint, _logits, CancellationToken.None));
                    _snapshotPosition = cache.Position;
                }

                (from, position, bytes) = (SiloName, _tokenCount, cache.CacheBytes);
            }

            // Committed: calls that have not started yet go to the target.
            _leaving = true;
            RequestContext.Set(IPlacementDirector.PlacementHintKey, target.Address);
            try
            {
                MigrateOnIdle();
            }
            finally
            {
                RequestContext.Remove(IPlacementDirector.PlacementHintKey);
            }

            var elapsed = Stopwatch.GetElapsedTime(started);
            if (from.Length > 0)
            {
                _metrics.Migrations.Record(elapsed);
            }

            SessionGrainLog.Migrated(_logger, Key.Tenant, Key.SessionId, target.Name, position, bytes, elapsed.TotalMilliseconds);
            return new MigrationResult(from, target.Name, position, bytes, elapsed.TotalSeconds);
        }
        finally
        {
            Exit();
        }
    }

    public async Task<bool> TryReleaseAsync(string reason)
    {
        if (!_gate.Wait(0))
        {
            return false;
        }

        try
        {
            if (_cache is null || _leaving)
            {
                return false;
            }

            await ReleaseCacheAsync(snapshot: true, reason);
            _leaving = true;
            DeactivateOnIdle();
            return true;
        }
        finally
        {
            _gate.Release();
        }
    }

    private static void ValidateTokens(ReadOnlySpan<int> tokens, int vocabSize)
    {
        if (tokens.IsEmpty)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, "The input has no tokens.");
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
}
