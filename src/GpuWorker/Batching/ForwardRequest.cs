using System.Threading.Tasks.Sources;

namespace KvCache.GpuWorker.Batching;

/// <summary>
/// A caller's reusable slot in a <see cref="BatchScheduler"/>: one per session, awaited once per forward, so a
/// decode step allocates nothing. One forward at a time per request.
/// </summary>
public sealed class ForwardRequest : IValueTaskSource
{
    // Continuations run on the thread pool, never on the scheduler's thread between passes.
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private int _pending;

    internal IKvCache? Cache { get; private set; }

    internal ReadOnlyMemory<int> Tokens { get; private set; }

    internal Memory<float> Logits { get; private set; }

    /// <summary>Log-probability of each token after the first given those before it (empty: not scored).</summary>
    internal Memory<float> Scores { get; private set; }

    /// <summary>Tokens already run (a prefill spans passes).</summary>
    internal int Done { get; set; }

    internal int Remaining => Tokens.Length - Done;

    void IValueTaskSource.GetResult(short token)
    {
        try
        {
            _core.GetResult(token);
        }
        finally
        {
            Cache = null;
            Tokens = default;
            Logits = default;
            Scores = default;
            Volatile.Write(ref _pending, 0);
        }
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    internal ValueTask Start(IKvCache cache, ReadOnlyMemory<int> tokens, Memory<float> logits, Memory<float> scores)
    {
        if (Interlocked.Exchange(ref _pending, 1) != 0)
        {
            throw new InvalidOperationException("This request is already waiting for a forward pass.");
        }

        _core.Reset();
        Cache = cache;
        Tokens = tokens;
        Logits = logits;
        Scores = scores;
        Done = 0;
        return new ValueTask(this, _core.Version);
    }

    /// <summary>Undoes <see cref="Start"/> when the request never reached the queue.</summary>
    internal void Abandon()
    {
        Cache = null;
        Tokens = default;
        Logits = default;
        Scores = default;
        Volatile.Write(ref _pending, 0);
    }

    /// <summary>The scoring of rows [<paramref name="start"/>, +<paramref name="take"/>): each row's target is the token after it.</summary>
    internal (ReadOnlyMemory<int> Targets, Memory<float> Scores) ScoreSlice(int start, int take)
    {
        if (Scores.IsEmpty)
        {
            return default;
        }

        int count = Math.Min(take, Tokens.Length - 1 - start);
        return (Tokens.Slice(start + 1, count), Scores.Slice(start, count));
    }

    internal void Complete() => _core.SetResult(true);

    internal void Fail(Exception error) => _core.SetException(error);
}
