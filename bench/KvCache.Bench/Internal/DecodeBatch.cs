using System.Diagnostics;
using System.Runtime.InteropServices;
using KvCache.GpuWorker;
using KvCache.GpuWorker.Batching;
using KvCache.GpuWorker.Sampling;

namespace KvCache.Bench.Internal;

/// <summary>Wall time, forward passes and managed bytes allocated over a run of decode steps.</summary>
internal readonly record struct DecodeTiming(double Seconds, long Passes, long AllocatedBytes);

/// <summary>
/// S sessions of one codec decoding greedily: their caches, filled to a context without prefill, and per session
/// the next token, its logits and the sampler's scratch. Disposing returns the caches' blocks to the model's pool.
/// </summary>
internal sealed class DecodeBatch : IDisposable
{
    private static readonly SamplingOptions s_greedy = new(0, 0, 0, 0);

    // 1 MiB of generated values in [-1, 1), written over and over: a cache only needs finite values to decode.
    private static readonly byte[] s_fill = FillChunk(1 << 20);

    private readonly LlamaModel _model;
    private readonly IKvCache[] _caches;
    private readonly ForwardItem[] _items;
    private readonly int[] _tokens;
    private readonly float[] _logits;
    private readonly float[] _scratch;
    private readonly int _vocab;
    private readonly int _scratchLength;

    public DecodeBatch(LlamaModel model, string codec, int sessions, int context)
    {
        _model = model;
        _vocab = model.Config.VocabSize;
        _scratchLength = TokenSampler.ScratchLength(_vocab);
        _caches = new IKvCache[sessions];
        _items = new ForwardItem[sessions];
        _tokens = new int[sessions];
        _logits = new float[(long)sessions * _vocab];
        _scratch = new float[(long)sessions * _scratchLength];
        try
        {
            for (int i = 0; i < sessions; i++)
            {
                _caches[i] = model.CreateCache(codec);
                Fill(_caches[i], context);
                _tokens[i] = 1 + i;
                _items[i] = new ForwardItem(_caches[i], _tokens.AsMemory(i, 1), _logits.AsMemory(i * _vocab, _vocab));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Bytes the codec holds over all sessions (Σ <see cref="IKvCache.CacheBytes"/>).</summary>
    public long CacheBytes => _caches.Sum(c => c.CacheBytes);

    /// <summary>
    /// <paramref name="passes"/> decode steps of every session, each one <see cref="ILanguageModel.ForwardBatch"/>
    /// of all sessions followed by their greedy samples, on this thread (allocations: this thread's).
    /// </summary>
    public DecodeTiming RunPasses(int passes)
    {
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        long start = Stopwatch.GetTimestamp();
        for (int p = 0; p < passes; p++)
        {
            _model.ForwardBatch(_items);
            for (int i = 0; i < _caches.Length; i++)
            {
                Sample(i);
            }
        }

        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return new DecodeTiming(seconds, passes, GC.GetAllocatedBytesForCurrentThread() - allocated);
    }

    /// <summary>
    /// <paramref name="steps"/> decode steps of every session, the sessions running as concurrent tasks that each
    /// await their own forward through <paramref name="scheduler"/>, which forms the passes (allocations: the
    /// whole process's, the bench's tasks included).
    /// </summary>
    public async Task<DecodeTiming> RunScheduledAsync(BatchScheduler scheduler, int steps)
    {
        var sessions = new Task[_caches.Length];
        long passes = scheduler.Passes;
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < sessions.Length; i++)
        {
            sessions[i] = SessionAsync(scheduler, i, steps);
        }

        await Task.WhenAll(sessions);
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return new DecodeTiming(seconds, scheduler.Passes - passes, GC.GetTotalAllocatedBytes(precise: true) - allocated);
    }

    public void Dispose()
    {
        foreach (var cache in _caches)
        {
            cache?.Dispose();
        }
    }

    private async Task SessionAsync(BatchScheduler scheduler, int session, int steps)
    {
        var request = new ForwardRequest();
        var item = _items[session];
        for (int step = 0; step < steps; step++)
        {
            await scheduler.ForwardAsync(request, item.Cache, item.Tokens, item.Logits);
            Sample(session);
        }
    }

    private void Sample(int session) =>
        _tokens[session] = TokenSampler.Sample(
            _logits.AsSpan(session * _vocab, _vocab), s_greedy, _caches[session].Position, _scratch.AsSpan(session * _scratchLength, _scratchLength)).TokenId;

    /// <summary>Sizes <paramref name="cache"/> for <paramref name="context"/> tokens and writes its whole state.</summary>
    private static void Fill(IKvCache cache, int context)
    {
        cache.BeginRestore(context);
        for (long offset = 0; offset < cache.StateLength; offset += s_fill.Length)
        {
            cache.WriteState(offset, s_fill.AsSpan(0, (int)Math.Min(s_fill.Length, cache.StateLength - offset)));
        }
    }

    /// <summary>Cache state that reads as values in [-1, 1) whichever element format the model's caches keep.</summary>
    private static byte[] FillChunk(int bytes) => MemoryMarshal.AsBytes(CacheValues.Bf16Pairs(bytes / sizeof(ushort)).AsSpan()).ToArray();
}
