using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Attention of one query row (all heads, one index per head) over a fourier cache: init tokens, the middle
/// segment with the query folded into the coefficients, then the window, in position order.
/// </summary>
/// <remarks>
/// <para>Init and window tokens go through exactly the operations of the full cache's attention (same dots, same
/// softmax, same per-element fused accumulation in position order), run by run: consecutive slots of one block, the
/// window ring split where it wraps, through <see cref="Kernels.Scores"/> and <see cref="Kernels.AccumulateValues"/>,
/// which are bit for bit the per-key Dot and Axpy.</para>
/// <para>The middle keeps that order too, in the head's exact-then-compressed dimension order. A middle run (exact
/// rows in one block, basis rows before φ's period wraps) scores its exact dims and its folded query against the
/// basis rows as two unscaled Scores, combined as (exact + folded) · scale, the per-key expression (exact = 0f when
/// e = 0; no folded term when m = 0); its values go through one AccumulateValues over the exact rows and one over the
/// basis rows. So with m = 0 the result equals the full cache's bit for bit.</para>
/// <para>Each thread owns its score row, small buffers and a scratch row for a run's folded scores, 64-byte aligned
/// like the full kernel's; Scores writes whole groups of 16, so each row has room for one group's overrun.</para>
/// </remarks>
internal sealed unsafe class FourierAttentionJob : ParallelJob, IDisposable
{
    /// <summary>The longest middle run, so that its folded scores fit the scratch row.</summary>
    private const int MaxMiddleRun = 256;

    private readonly float* _memory;
    private readonly int _scoreStride;
    private readonly int _bufferStride;
    private readonly int _threadStride;
    private FourierKvCache? _cache;
    private float* _q, _out;
    private int _layer, _heads, _position;
    private float _scale;

    public FourierAttentionJob(int threads, int maxPositions, int headDim, int coefficients)
    {
        _scoreStride = ((maxPositions + 15) & ~15) + 16;
        _bufferStride = (headDim + coefficients + 15) & ~15;
        _threadStride = _scoreStride + _bufferStride + MaxMiddleRun + 16;
        long floats = (long)threads * _threadStride;
        _memory = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        NativeMemory.Clear(_memory, (nuint)(floats * sizeof(float)));
    }

    /// <summary>Query row q [heads · head_dim] at <paramref name="position"/> (already appended) → output [heads · head_dim].</summary>
    public void Set(FourierKvCache cache, int layer, float* q, int heads, int position, float scale, float* output)
    {
        _cache = cache;
        _layer = layer;
        _q = q;
        _heads = heads;
        _position = position;
        _scale = scale;
        _out = output;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int index, int thread)
    {
        var cache = _cache!;
        var f = cache.Layout;
        int d = f.HeadDim, e = f.Exact, m = f.Compressed, c2 = f.Coefficients, layer = _layer;
        int g = index / (_heads / f.KvHeads);
        int n = _position + 1;
        int init = Math.Min(n, f.Init), middle = f.MiddleCount(n), windowStart = init + middle;
        float* q = _q + (long)index * d;
        float* o = _out + (long)index * d;
        float* s = _memory + (long)thread * _threadStride;
        float* permuted = s + _scoreStride;            // q, then o, in the head's exact-then-compressed order
        float* folded = permuted + d;                  // q_C · c_j, then Σ_u p_u φ_j(u)
        float* foldedScores = permuted + _bufferStride; // Σ_j (q_C · c_j) φ_j(u) over one middle run
        float scale = _scale;

        ScoreSlots(q, g, 0, init, s);
        if (middle > 0)
        {
            int* order = f.OrderOf(layer, 0, g);
            for (int i = 0; i < d; i++)
            {
                permuted[i] = q[order[i]];
            }

            if (m > 0)
            {
                float* keys = cache.Coefficients(layer, 0, g);
                for (int j = 0; j < c2; j++)
                {
                    folded[j] = Kernels.Dot(permuted + e, keys + (long)j * m, m);
                }
            }

            for (int u = 0, run; u < middle; u += run)
            {
                run = MiddleRun(f, u, middle);
                float* score = s + init + u;
                float* next = e > 0 && u + run < middle ? cache.Middle(u + run, layer, 0, g) : null;
                if (m == 0)
                {
                    Kernels.Scores(permuted, cache.Middle(u, layer, 0, g), run, e, scale, score, next);
                    continue;
                }

                if (e > 0)
                {
                    Kernels.Scores(permuted, cache.Middle(u, layer, 0, g), run, e, 1f, score, next);
                }
                else
                {
                    new Span<float>(score, run).Clear(); // no exact dims: the exact term is 0f
                }

                // (exact + folded) · scale, the two roundings of the per-key expression.
                Kernels.Scores(folded, f.Basis + (long)(u % f.Horizon) * c2, run, c2, 1f, foldedScores, null);
                var scores = new Span<float>(score, run);
                TensorPrimitives.AddMultiply(scores, new ReadOnlySpan<float>(foldedScores, run), scale, scores);
            }
        }

        ScoreSlots(q, g, windowStart, n, s);

        float sum = Kernels.Exponentiate(s, n);

        new Span<float>(o, d).Clear();
        AccumulateSlots(s, g, 0, init, o);
        if (middle > 0)
        {
            int* order = f.OrderOf(layer, 1, g);
            for (int i = 0; i < d; i++)
            {
                permuted[i] = o[order[i]];
            }

            new Span<float>(folded, c2).Clear();
            for (int u = 0, run; u < middle; u += run)
            {
                run = MiddleRun(f, u, middle);
                float* p = s + init + u;
                if (e > 0)
                {
                    Kernels.AccumulateValues(p, cache.Middle(u, layer, 1, g), run, e, permuted, u + run < middle ? cache.Middle(u + run, layer, 1, g) : null);
                }

                if (m > 0)
                {
                    Kernels.AccumulateValues(p, f.Basis + (long)(u % f.Horizon) * c2, run, c2, folded, null);
                }
            }

            if (m > 0)
            {
                float* values = cache.Coefficients(layer, 1, g);
                for (int j = 0; j < c2; j++)
                {
                    Kernels.Axpy(folded[j], values + (long)j * m, permuted + e, m);
                }
            }

            for (int i = 0; i < d; i++)
            {
                o[order[i]] = permuted[i];
            }
        }

        AccumulateSlots(s, g, windowStart, n, o);

        TensorPrimitives.Multiply(new ReadOnlySpan<float>(o, d), 1f / sum, new Span<float>(o, d));
    }

    public void Dispose() => NativeMemory.AlignedFree(_memory);

    /// <summary>s[t] = q · k_t · scale for the init or window positions [<paramref name="from"/>, <paramref name="to"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ScoreSlots(float* q, int g, int from, int to, float* s)
    {
        int d = _cache!.Layout.HeadDim;
        for (int t = from, run; t < to; t += run)
        {
            run = SlotRun(t, to);
            Kernels.Scores(q, Slot(t, 0, g), run, d, _scale, s + t, t + run < to ? Slot(t + run, 0, g) : null);
        }
    }

    /// <summary>o += Σ s[t] v_t over the init or window positions [<paramref name="from"/>, <paramref name="to"/>), in position order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AccumulateSlots(float* s, int g, int from, int to, float* o)
    {
        int d = _cache!.Layout.HeadDim;
        for (int t = from, run; t < to; t += run)
        {
            run = SlotRun(t, to);
            Kernels.AccumulateValues(s + t, Slot(t, 1, g), run, d, o, t + run < to ? Slot(t + run, 1, g) : null);
        }
    }

    /// <summary>The token slot row of init or window position <paramref name="t"/>.</summary>
    private float* Slot(int t, int side, int g)
    {
        var cache = _cache!;
        return cache.Slot(cache.Layout.SlotOf(t), _layer, side, g);
    }

    /// <summary>
    /// How many init or window positions from <paramref name="t"/> (before <paramref name="end"/>) lie in consecutive
    /// slots of one block: init positions end before the window, window positions stop where the ring wraps.
    /// </summary>
    private int SlotRun(int t, int end)
    {
        var f = _cache!.Layout;
        int slot = f.SlotOf(t);
        int run = Math.Min(end - t, f.BlockTokens - slot % f.BlockTokens);
        return t < f.Init ? run : Math.Min(run, f.Init + f.Window - slot);
    }

    /// <summary>
    /// How many middle tokens from <paramref name="u"/> (before <paramref name="end"/>) have consecutive exact rows (one
    /// block) and consecutive basis rows (before u mod horizon wraps), at most <see cref="MaxMiddleRun"/>.
    /// </summary>
    private static int MiddleRun(FourierLayout f, int u, int end)
    {
        int run = Math.Min(end - u, MaxMiddleRun);
        if (f.Exact > 0)
        {
            run = Math.Min(run, f.MiddleTokensPerBlock - u % f.MiddleTokensPerBlock);
        }

        if (f.Compressed > 0)
        {
            run = Math.Min(run, f.Horizon - u % f.Horizon);
        }

        return run;
    }
}
