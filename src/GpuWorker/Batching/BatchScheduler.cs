using System.Diagnostics;

namespace KvCache.GpuWorker.Batching;

/// <summary>
/// Continuous batching for one model: forwards of concurrent sessions join shared passes
/// (<see cref="ILanguageModel.ForwardBatch"/>), so the weights are read once per pass instead of once per session.
/// </summary>
/// <remarks>
/// <para>One thread per model runs passes back to back. A pass takes waiting decode steps (one token each) in arrival
/// order, then fills the rest of its <see cref="ILanguageModel.MaxBatchTokens"/> rows with prompt chunks, oldest first;
/// a prompt longer than that runs over several passes, its logits coming from its last chunk. While a prompt waits,
/// <see cref="BatchSchedulerOptions.PrefillRowsReserved"/> rows of every pass are kept for it, so neither kind
/// starves the other. Sessions join or leave between any two passes.</para>
/// <para>Latency: a step waits for the pass running when it arrives, plus at most
/// <see cref="BatchSchedulerOptions.GatherWindow"/> from the last decode rows' completion, which the scheduler spends
/// waiting for the sessions it served to send their next step (they are sampling and logging their token meanwhile).
/// Prompt-only passes wait for them too, so a long prompt cannot run its chunks while decoders are away.</para>
/// <para>Results equal unbatched forwards bit for bit, so batching never changes a session's tokens.</para>
/// </remarks>
public sealed class BatchScheduler : IDisposable
{
    private readonly ILanguageModel _model;
    private readonly BatchSchedulerOptions _options;
    private readonly Lock _gate = new();
    private readonly Queue<ForwardRequest> _decodes = new(256);
    private readonly Queue<ForwardRequest> _prefills = new(64);
    private readonly ManualResetEventSlim _arrived = new(false);
    private readonly ForwardRequest[] _pass;
    private readonly ForwardItem[] _items;
    private readonly int[] _taken;
    private readonly Thread _thread;
    private bool _disposed;

    // Sessions whose decode step completed and that have not sent their next one, and when the last such step completed.
    private int _awaited;
    private long _awaitedSince;
    private long _passes;
    private long _decodeRows;
    private long _prefillRows;

    public BatchScheduler(ILanguageModel model, BatchSchedulerOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.GatherWindow, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfNegative(options.PrefillRowsReserved);
        _model = model;
        _options = options;
        int rows = model.MaxBatchTokens;
        _pass = new ForwardRequest[rows];
        _items = new ForwardItem[rows];
        _taken = new int[rows];
        _thread = new Thread(RunPasses) { IsBackground = true, Name = $"kvcache-batch-{model.Id}" };
        _thread.Start();
    }

    public ILanguageModel Model => _model;

    /// <summary>Passes run so far.</summary>
    public long Passes => Volatile.Read(ref _passes);

    /// <summary>Decode steps (one-token forwards) run so far, over all passes.</summary>
    public long DecodeRows => Volatile.Read(ref _decodeRows);

    /// <summary>Prompt tokens (forwards of two or more tokens) run so far, over all passes.</summary>
    public long PrefillRows => Volatile.Read(ref _prefillRows);

    /// <summary>
    /// Appends <paramref name="tokens"/> to <paramref name="cache"/> in the next passes and writes the last token's
    /// next-token logits to <paramref name="logits"/>, like <see cref="ILanguageModel.Forward"/>; with
    /// <paramref name="scores"/> (length tokens − 1), also the log-probability of each token after the first given
    /// the tokens before it.
    /// </summary>
    /// <remarks>Input errors and a full cache pool throw here, synchronously, before anything is queued.</remarks>
    /// <exception cref="CacheCapacityException">The pool has no room for the new tokens; the cache is unchanged.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id outside the vocabulary, or past max positions.</exception>
    public ValueTask ForwardAsync(ForwardRequest request, IKvCache cache, ReadOnlyMemory<int> tokens, Memory<float> logits, Memory<float> scores = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (logits.Length < _model.Config.VocabSize)
        {
            throw new ArgumentException($"Logits need {_model.Config.VocabSize} elements, got {logits.Length}.", nameof(logits));
        }

        if (!scores.IsEmpty && scores.Length < tokens.Length - 1)
        {
            throw new ArgumentException($"Scores need {tokens.Length - 1} elements, got {scores.Length}.", nameof(scores));
        }

        _model.Reserve(cache, tokens.Span);
        var pending = request.Start(cache, tokens, logits, scores);
        lock (_gate)
        {
            if (_disposed)
            {
                request.Abandon();
                throw new ObjectDisposedException(nameof(BatchScheduler));
            }

            if (tokens.Length == 1)
            {
                _decodes.Enqueue(request);
                _awaited = Math.Max(0, _awaited - 1);
            }
            else
            {
                _prefills.Enqueue(request);
            }

            _arrived.Set();
        }

        return pending;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _arrived.Set();
        }

        _thread.Join();
        var error = new ObjectDisposedException(nameof(BatchScheduler), "The model's batch scheduler stopped.");
        while (_decodes.TryDequeue(out var r) || _prefills.TryDequeue(out r))
        {
            r.Fail(error);
        }

        _arrived.Dispose();
    }

    private void RunPasses()
    {
        while (true)
        {
            bool idle;
            lock (_gate)
            {
                // Sleep only when nothing waits: a prompt that needs more passes keeps the loop going.
                idle = _decodes.Count == 0 && _prefills.Count == 0 && !_disposed;
                if (idle)
                {
                    _arrived.Reset();
                }
            }

            if (idle)
            {
                _arrived.Wait();
            }

            Gather();
            int count, decodes;
            lock (_gate)
            {
                if (_disposed)
                {
                    return;
                }

                (count, decodes) = Compose();
            }

            if (count > 0)
            {
                Run(count, decodes);
            }
        }
    }

    /// <summary>Waits, up to the gather window after the last decode rows completed, until their sessions are back.</summary>
    private void Gather()
    {
        while (true)
        {
            TimeSpan left;
            lock (_gate)
            {
                if (_disposed || _awaited == 0 || _decodes.Count >= _model.MaxBatchTokens)
                {
                    return;
                }

                left = _options.GatherWindow - Stopwatch.GetElapsedTime(_awaitedSince);
                if (left <= TimeSpan.Zero)
                {
                    // The rest have left (or are slow): stop waiting for them until they decode again.
                    _awaited = 0;
                    return;
                }

                _arrived.Reset();
            }

            // Event waits have millisecond resolution: wake at least that often to honour shorter windows.
            _arrived.Wait(left < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : left);
        }
    }

    /// <summary>Takes the next pass's requests (decode steps first); caller holds the gate.</summary>
    private (int Count, int Decodes) Compose()
    {
        int max = _model.MaxBatchTokens, rows = 0, count = 0;
        int decodeRows = _prefills.Count > 0 ? max - Math.Min(_options.PrefillRowsReserved, max - 1) : max;
        while (rows < decodeRows && _decodes.TryDequeue(out var r))
        {
            _pass[count] = r;
            _items[count] = new ForwardItem(r.Cache!, r.Tokens, r.Logits);
            _taken[count++] = 1;
            rows++;
        }

        int decodes = count;
        foreach (var p in _prefills)
        {
            if (rows == max)
            {
                break;
            }

            // Every prompt but the pass's last one is taken to its end, so finished prompts are a prefix of the queue.
            int take = Math.Min(p.Remaining, max - rows);
            bool last = take == p.Remaining;
            _pass[count] = p;
            var (targets, scores) = p.ScoreSlice(p.Done, take);
            _items[count] = new ForwardItem(p.Cache!, p.Tokens.Slice(p.Done, take), last ? p.Logits : Memory<float>.Empty, targets, scores);
            _taken[count++] = take;
            rows += take;
        }

        return (count, decodes);
    }

    private void Run(int count, int decodes)
    {
        Exception? error = null;
        try
        {
            _model.ForwardBatch(_items.AsSpan(0, count));
        }
        catch (Exception ex)
        {
            error = ex;
        }

        if (decodes > 0 && error is null)
        {
            // Counted before completing: a session may send its next step before this method returns.
            lock (_gate)
            {
                _awaited += decodes;
                _awaitedSince = Stopwatch.GetTimestamp();
            }
        }

        long prefillRows = 0;
        for (int i = 0; i < count; i++)
        {
            var r = _pass[i];
            if (i >= decodes)
            {
                r.Done += _taken[i];
                prefillRows += _taken[i];
                if (r.Remaining > 0 && error is null)
                {
                    continue;
                }

                lock (_gate)
                {
                    _prefills.Dequeue();
                }
            }

            if (error is null)
            {
                r.Complete();
            }
            else
            {
                r.Fail(error);
            }
        }

        Array.Clear(_items, 0, count);
        Array.Clear(_pass, 0, count);
        Volatile.Write(ref _passes, _passes + 1);
        Volatile.Write(ref _decodeRows, _decodeRows + decodes);
        Volatile.Write(ref _prefillRows, _prefillRows + prefillRows);
    }
}
