using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Attention of one query row (all heads, one index per head) over a fourier cache: init tokens, the middle
/// segment with the query folded into the coefficients, then the window, in position order.
/// </summary>
/// <remarks>
/// Init and window tokens go through exactly the operations of the full cache's attention (same dots, same
/// softmax, same per-element fused accumulation in position order). The middle keeps that order too, in the
/// head's exact-then-compressed dimension order, so with m = 0 the result equals the full cache's bit for bit.
/// Each thread owns its score row and small buffers, 64-byte aligned like the full kernel's.
/// </remarks>
internal sealed unsafe class FourierAttentionJob : ParallelJob, IDisposable
{
    private readonly float* _memory;
    private readonly int _scoreStride;
    private readonly int _bufferStride;
    private FourierKvCache? _cache;
    private float* _q, _out;
    private int _layer, _heads, _position;
    private float _scale;

    public FourierAttentionJob(int threads, int maxPositions, int headDim, int coefficients)
    {
        _scoreStride = (maxPositions + 15) & ~15;
        _bufferStride = (headDim + coefficients + 15) & ~15;
        long floats = (long)threads * (_scoreStride + _bufferStride);
        _memory = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        NativeMemory.Clear(_memory, (nuint)(floats * sizeof(float)));
        Threads = threads;
    }

    public int Threads { get; }

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
        float* s = _memory + (long)thread * (_scoreStride + _bufferStride);
        float* permuted = s + _scoreStride; // q, then o, in the head's exact-then-compressed order
        float* folded = permuted + d;       // q_C · c_j, then Σ_u p_u φ_j(u)
        float scale = _scale;

        for (int t = 0; t < init; t++)
        {
            s[t] = Kernels.Dot(q, cache.Slot(t, layer, 0, g), d) * scale;
        }

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

            for (int u = 0; u < middle; u++)
            {
                float score = e > 0 ? Kernels.Dot(permuted, cache.Middle(u, layer, 0, g), e) : 0f;
                if (m > 0)
                {
                    score += Kernels.Dot(folded, f.Basis + (long)(u % f.Horizon) * c2, c2);
                }

                s[init + u] = score * scale;
            }
        }

        for (int t = windowStart; t < n; t++)
        {
            s[t] = Kernels.Dot(q, cache.Slot(f.SlotOf(t), layer, 0, g), d) * scale;
        }

        float sum = Kernels.Exponentiate(s, n);

        new Span<float>(o, d).Clear();
        for (int t = 0; t < init; t++)
        {
            Kernels.Axpy(s[t], cache.Slot(t, layer, 1, g), o, d);
        }

        if (middle > 0)
        {
            int* order = f.OrderOf(layer, 1, g);
            for (int i = 0; i < d; i++)
            {
                permuted[i] = o[order[i]];
            }

            new Span<float>(folded, c2).Clear();
            for (int u = 0; u < middle; u++)
            {
                float p = s[init + u];
                if (e > 0)
                {
                    Kernels.Axpy(p, cache.Middle(u, layer, 1, g), permuted, e);
                }

                if (m > 0)
                {
                    Kernels.Axpy(p, f.Basis + (long)(u % f.Horizon) * c2, folded, c2);
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

        for (int t = windowStart; t < n; t++)
        {
            Kernels.Axpy(s[t], cache.Slot(f.SlotOf(t), layer, 1, g), o, d);
        }

        TensorPrimitives.Multiply(new ReadOnlySpan<float>(o, d), 1f / sum, new Span<float>(o, d));
    }

    public void Dispose() => NativeMemory.AlignedFree(_memory);
}
