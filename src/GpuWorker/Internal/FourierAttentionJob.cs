using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Attention of one query row (all heads) over a fourier cache: init tokens, the middle segment with the query folded
/// into the coefficients, then the window, in position order. Each job index takes a group of consecutive heads.
/// </summary>
/// <remarks>
/// <para>Init and window tokens go through exactly the operations of the full cache's attention (same dots, same
/// softmax, same per-element fused accumulation in position order), run by run: consecutive slots of one block, the
/// window ring split where it wraps, through <see cref="Kernels.Scores"/> and <see cref="Kernels.AccumulateValues"/>,
/// which are bit for bit the per-key Dot and Axpy.</para>
/// <para>The middle keeps that order too, in the head's exact-then-compressed dimension order. A middle run (exact
/// rows in one block, basis rows before φ's period wraps) scores its exact dims and its folded query against the
/// basis rows as two unscaled Scores, combined as (exact + folded) · scale, the per-key expression (exact = 0f when
/// e_l = 0; no folded term when m_l = 0; m_l and e_l are the attended layer's); its values go through one AccumulateValues over the exact rows and one over the
/// basis rows. So with m = 0 the result equals the full cache's bit for bit.</para>
/// <para>The middle loops go run by run, and within a run head by head: every head of the group reads the same basis
/// rows, which then come from L1 or L2. Head by head, the basis (middle tokens × 2k floats, 1.8 MiB at 8k tokens and
/// k = 32, more than L2) was read again from memory for every head, more bytes than the cache itself. Each head's
/// own operations and their order are unchanged, so the grouping never changes a result.</para>
/// <para>Each thread owns, per head of a group, a score row and small buffers, and one scratch row for a run's folded
/// scores, 64-byte aligned like the full kernel's; Scores writes whole groups of 16, so each row has room for one
/// group's overrun.</para>
/// </remarks>
internal sealed unsafe class FourierAttentionJob : ParallelJob, IDisposable
{
    /// <summary>The longest middle run, so that its folded scores fit the scratch row.</summary>
    private const int MaxMiddleRun = 256;

    private readonly float* _memory;
    private readonly int _heads;
    private readonly int _headsPerItem;
    private readonly int _scoreStride;
    private readonly int _headStride;
    private readonly int _threadStride;
    private FourierKvCache? _cache;
    private float* _q, _out;
    private int _layer, _position;
    private float _scale;

    /// <summary>A job for <paramref name="heads"/> query heads, split in one group per compute thread.</summary>
    public FourierAttentionJob(int threads, int heads, int maxPositions, int headDim, int coefficients)
    {
        _heads = heads;
        _headsPerItem = (heads + threads - 1) / threads;
        Items = (heads + _headsPerItem - 1) / _headsPerItem;
        _scoreStride = ((maxPositions + 15) & ~15) + 16;
        _headStride = _scoreStride + ((headDim + coefficients + 15) & ~15);
        _threadStride = _headsPerItem * _headStride + MaxMiddleRun + 16;
        long floats = (long)threads * _threadStride;
        _memory = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        NativeMemory.Clear(_memory, (nuint)(floats * sizeof(float)));
    }

    /// <summary>Job indices one query row takes: [0, Items).</summary>
    public int Items { get; }

    /// <summary>Query row q [heads · head_dim] at <paramref name="position"/> (already appended) → output [heads · head_dim].</summary>
    public void Set(FourierKvCache cache, int layer, float* q, int position, float scale, float* output)
    {
        _cache = cache;
        _layer = layer;
        _q = q;
        _position = position;
        _scale = scale;
        _out = output;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int index, int thread)
    {
        var f = _cache!.Layout;
        int first = index * _headsPerItem, count = Math.Min(_headsPerItem, _heads - first);
        int d = f.HeadDim, n = _position + 1;
        int init = Math.Min(n, f.Init), middle = f.MiddleCount(n), windowStart = init + middle;
        float* memory = _memory + (long)thread * _threadStride;
        float* foldedScores = memory + (long)_headsPerItem * _headStride; // Σ_j (q_C · c_j) φ_j(u) over one middle run
        float* sums = stackalloc float[count];

        for (int h = 0; h < count; h++)
        {
            ScoreSlots(Query(first + h), KvHead(first + h), 0, init, Scores(memory, h));
        }

        if (middle > 0)
        {
            for (int h = 0; h < count; h++)
            {
                FoldQuery(Query(first + h), KvHead(first + h), Permuted(memory, h));
            }

            for (int u = 0, run; u < middle; u += run)
            {
                run = MiddleRun(f, _layer, u, middle);
                for (int h = 0; h < count; h++)
                {
                    ScoreMiddleRun(KvHead(first + h), u, run, middle, Scores(memory, h) + init + u, Permuted(memory, h), foldedScores);
                }
            }
        }

        for (int h = 0; h < count; h++)
        {
            float* s = Scores(memory, h);
            ScoreSlots(Query(first + h), KvHead(first + h), windowStart, n, s);
            sums[h] = Kernels.Exponentiate(s, n);
            new Span<float>(Output(first + h), d).Clear();
            AccumulateSlots(s, KvHead(first + h), 0, init, Output(first + h));
        }

        if (middle > 0)
        {
            for (int h = 0; h < count; h++)
            {
                PermuteOutput(KvHead(first + h), Output(first + h), Permuted(memory, h));
            }

            for (int u = 0, run; u < middle; u += run)
            {
                run = MiddleRun(f, _layer, u, middle);
                for (int h = 0; h < count; h++)
                {
                    AccumulateMiddleRun(KvHead(first + h), u, run, middle, Scores(memory, h) + init + u, Permuted(memory, h));
                }
            }

            for (int h = 0; h < count; h++)
            {
                UnfoldOutput(KvHead(first + h), Permuted(memory, h), Output(first + h));
            }
        }

        for (int h = 0; h < count; h++)
        {
            AccumulateSlots(Scores(memory, h), KvHead(first + h), windowStart, n, Output(first + h));
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(Output(first + h), d), 1f / sums[h], new Span<float>(Output(first + h), d));
        }
    }

    public void Dispose() => NativeMemory.AlignedFree(_memory);

    private float* Query(int head) => _q + (long)head * _cache!.Layout.HeadDim;

    private float* Output(int head) => _out + (long)head * _cache!.Layout.HeadDim;

    private int KvHead(int head) => head / (_heads / _cache!.Layout.KvHeads);

    /// <summary>The score row of the group's <paramref name="h"/>-th head.</summary>
    private float* Scores(float* memory, int h) => memory + (long)h * _headStride;

    /// <summary>
    /// The group's <paramref name="h"/>-th head's q, then o, in its exact-then-compressed order (head_dim floats),
    /// followed by its folded vector (2k floats): q_C · c_j, then Σ_u p_u φ_j(u).
    /// </summary>
    private float* Permuted(float* memory, int h) => Scores(memory, h) + _scoreStride;

    /// <summary>Permutes q into the key order and folds its compressed dims into the key coefficients.</summary>
    private void FoldQuery(float* q, int g, float* permuted)
    {
        var f = _cache!.Layout;
        int d = f.HeadDim, e = f.ExactOf(_layer), m = f.CompressedOf(_layer);
        int* order = f.OrderOf(_layer, 0, g);
        for (int i = 0; i < d; i++)
        {
            permuted[i] = q[order[i]];
        }

        if (m > 0)
        {
            float* keys = _cache.Coefficients(_layer, 0, g);
            for (int j = 0; j < f.Coefficients; j++)
            {
                permuted[d + j] = Kernels.Dot(permuted + e, keys + (long)j * m, m);
            }
        }
    }

    /// <summary>Scores of middle tokens [u, u + run) (one run) into <paramref name="score"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ScoreMiddleRun(int g, int u, int run, int middle, float* score, float* permuted, float* foldedScores)
    {
        var cache = _cache!;
        var f = cache.Layout;
        int e = f.ExactOf(_layer), c2 = f.Coefficients;
        float* next = e > 0 && u + run < middle ? cache.Middle(u + run, _layer, 0, g) : null;
        if (f.CompressedOf(_layer) == 0)
        {
            Kernels.Scores(permuted, cache.Middle(u, _layer, 0, g), run, e, _scale, score, next);
            return;
        }

        if (e > 0)
        {
            Kernels.Scores(permuted, cache.Middle(u, _layer, 0, g), run, e, 1f, score, next);
        }
        else
        {
            new Span<float>(score, run).Clear(); // no exact dims: the exact term is 0f
        }

        // (exact + folded) · scale, the two roundings of the per-key expression.
        Kernels.Scores(permuted + f.HeadDim, f.Basis + (long)(u % f.Horizon) * c2, run, c2, 1f, foldedScores, null);
        var scores = new Span<float>(score, run);
        TensorPrimitives.AddMultiply(scores, new ReadOnlySpan<float>(foldedScores, run), _scale, scores);
    }

    /// <summary>Permutes o (init tokens accumulated) into the value order and clears the folded accumulators.</summary>
    private void PermuteOutput(int g, float* o, float* permuted)
    {
        var f = _cache!.Layout;
        int* order = f.OrderOf(_layer, 1, g);
        for (int i = 0; i < f.HeadDim; i++)
        {
            permuted[i] = o[order[i]];
        }

        new Span<float>(permuted + f.HeadDim, f.Coefficients).Clear();
    }

    /// <summary>Accumulates middle tokens [u, u + run) weighted by <paramref name="p"/>: exact dims, then basis rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AccumulateMiddleRun(int g, int u, int run, int middle, float* p, float* permuted)
    {
        var cache = _cache!;
        var f = cache.Layout;
        int e = f.ExactOf(_layer), c2 = f.Coefficients;
        if (e > 0)
        {
            Kernels.AccumulateValues(p, cache.Middle(u, _layer, 1, g), run, e, permuted, u + run < middle ? cache.Middle(u + run, _layer, 1, g) : null);
        }

        if (f.CompressedOf(_layer) > 0)
        {
            Kernels.AccumulateValues(p, f.Basis + (long)(u % f.Horizon) * c2, run, c2, permuted + f.HeadDim, null);
        }
    }

    /// <summary>Expands the folded accumulators through the value coefficients and writes o back in head order.</summary>
    private void UnfoldOutput(int g, float* permuted, float* o)
    {
        var f = _cache!.Layout;
        int d = f.HeadDim, e = f.ExactOf(_layer), m = f.CompressedOf(_layer);
        if (m > 0)
        {
            float* values = _cache.Coefficients(_layer, 1, g);
            for (int j = 0; j < f.Coefficients; j++)
            {
                Kernels.Axpy(permuted[d + j], values + (long)j * m, permuted + e, m);
            }
        }

        int* order = f.OrderOf(_layer, 1, g);
        for (int i = 0; i < d; i++)
        {
            o[order[i]] = permuted[i];
        }
    }

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
    private static int MiddleRun(FourierLayout f, int layer, int u, int end)
    {
        int run = Math.Min(end - u, MaxMiddleRun);
        if (f.ExactOf(layer) > 0)
        {
            run = Math.Min(run, f.MiddleTokensPerBlock - u % f.MiddleTokensPerBlock);
        }

        if (f.CompressedOf(layer) > 0)
        {
            run = Math.Min(run, f.Horizon - u % f.Horizon);
        }

        return run;
    }
}
