using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>
/// CPU backend: Vector512 kernels, matmuls split over output rows and attention over (row, head) pairs across
/// the compute threads. Partitioning never changes a result: each output element is one fixed-order reduction.
/// Parallel ops from concurrent callers are serialized by a lock (each one already uses every thread).
/// </summary>
internal sealed unsafe partial class CpuBackend : IComputeBackend
{
    // Below this many multiply-adds a job runs inline: handing it to the pool costs more than it saves.
    private const long ParallelThreshold = 1 << 14;

    // An attention item takes up to this many heads of one row: a block's keys for consecutive heads are one
    // contiguous run, which streams far better than one head's few KiB per block.
    private const int MaxHeadsPerItem = 4;

    private readonly ComputePool _pool;
    private readonly Lock _gate = new();
    private readonly AttentionJob _attention;
    private readonly float* _scores;

    public CpuBackend(int threads, int maxPositions)
    {
        _pool = new ComputePool(threads);

        // Every thread's score row starts 64-byte aligned, so the vectorized exp sees identical layouts on any thread.
        // Kernels.Scores writes whole groups of 16 scores: a row holds its positions plus one group's overrun.
        int stride = ((maxPositions + 15) & ~15) + 16;
        long floats = (long)threads * MaxHeadsPerItem * stride;
        _scores = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        NativeMemory.Clear(_scores, (nuint)(floats * sizeof(float)));
        _attention = new AttentionJob(_scores, stride, MaxHeadsPerItem * stride);
        _sliding = new SlidingAttentionJob(_scores, stride);
        _fused = new FusedAttentionJob(_scores, stride, MaxHeadsPerItem * stride);
    }

    public string Name => "cpu";

    public void Embed(float* table, ReadOnlySpan<int> tokens, int dim, float* x)
    {
        for (int r = 0; r < tokens.Length; r++)
        {
            new ReadOnlySpan<float>(table + (long)tokens[r] * dim, dim).CopyTo(new Span<float>(x + (long)r * dim, dim));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RmsNorm(float* x, float* weight, float* y, int rows, int dim, float eps)
    {
        for (int r = 0; r < rows; r++)
        {
            float* xr = x + (long)r * dim;
            float* yr = y + (long)r * dim;
            float inv = 1f / MathF.Sqrt(Kernels.Dot(xr, xr, dim) / dim + eps);
            var ys = new Span<float>(yr, dim);
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(xr, dim), inv, ys);
            TensorPrimitives.Multiply(ys, new ReadOnlySpan<float>(weight, dim), ys);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Rope(float* x, int rows, int heads, int headDim, int startPosition, float* cos, float* sin)
    {
        int half = headDim / 2;
        for (int r = 0; r < rows; r++)
        {
            float* c = cos + (long)(startPosition + r) * half;
            float* s = sin + (long)(startPosition + r) * half;
            for (int h = 0; h < heads; h++)
            {
                float* v = x + ((long)r * heads + h) * headDim;
                for (int i = 0; i < half; i++)
                {
                    float a = v[i], b = v[i + half];
                    v[i] = a * c[i] - b * s[i];
                    v[i + half] = b * c[i] + a * s[i];
                }
            }
        }
    }

    public void StoreKv(in KvView cache, int layer, float* k, float* v, int rows, int startPosition)
    {
        int hd = cache.HeadDim;
        for (int r = 0; r < rows; r++)
        {
            int pos = startPosition + r;
            int block = pos / cache.BlockTokens;
            long inBlock = (long)(pos % cache.BlockTokens) * hd;
            for (int g = 0; g < cache.KvHeads; g++)
            {
                long src = ((long)r * cache.KvHeads + g) * hd;
                StoreVector(cache, block, layer, 0, g, inBlock, new ReadOnlySpan<float>(k + src, hd));
                StoreVector(cache, block, layer, 1, g, inBlock, new ReadOnlySpan<float>(v + src, hd));
            }
        }
    }

    /// <summary>Writes one head's vector at element <paramref name="inBlock"/> of a slab, rounded to bf16 when the cache keeps bf16.</summary>
    private static void StoreVector(in KvView cache, int block, int layer, int kind, int kvHead, long inBlock, ReadOnlySpan<float> vector)
    {
        if (cache.IsBf16)
        {
            Bf16.Convert(vector, new Span<ushort>(cache.Slab<ushort>(block, layer, kind, kvHead) + inBlock, vector.Length));
        }
        else
        {
            vector.CopyTo(new Span<float>(cache.Slab<float>(block, layer, kind, kvHead) + inBlock, vector.Length));
        }
    }

    public void Attention(AttentionRows rows, int layer, float* q, int heads, float scale, float* output)
    {
        int perItem = HeadsPerItem(rows.Count, heads, heads / rows.Views[0].KvHeads);
        int count = rows.Count * (heads / perItem);
        bool parallel = count > 1 && rows.Keys * heads * rows.Views[0].HeadDim >= ParallelThreshold;
        lock (_gate)
        {
            _attention.Set(rows, layer, q, heads, perItem, scale, output);
            _pool.Run(_attention, count, inline: !parallel);
        }
    }

    /// <summary>
    /// The most heads per attention item (whole query groups, dividing the head count, at most MaxHeadsPerItem) that
    /// still leaves two items per compute thread, so a lone decode row keeps both threads busy.
    /// </summary>
    private int HeadsPerItem(int rows, int heads, int groupSize)
    {
        for (int c = MaxHeadsPerItem; c > groupSize; c--)
        {
            if (heads % c == 0 && c % groupSize == 0 && rows * (heads / c) >= 2 * _pool.Threads)
            {
                return c;
            }
        }

        return groupSize <= MaxHeadsPerItem && heads % groupSize == 0 ? groupSize : 1;
    }

    // The SVD-GQA projections are a few percent of a layer's multiply-adds, so they run inline on the caller.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ProjectGroups(float* x, int rows, int groups, int inDim, float* basis, int outDim, float* y)
    {
        for (int r = 0; r < rows; r++)
        {
            for (int g = 0; g < groups; g++)
            {
                float* xg = x + ((long)r * groups + g) * inDim;
                float* yg = y + ((long)r * groups + g) * outDim;
                for (int e = 0; e < outDim; e++)
                {
                    yg[e] = Kernels.Dot(xg, basis + ((long)g * outDim + e) * inDim, inDim);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ProjectQueries(float* q, int rows, int heads, int headDim, int kvHeads, int groupSize, float* basis, int rank, float* y)
    {
        int perKvHead = heads / kvHeads;
        long basisStride = (long)groupSize * headDim;
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < heads; i++)
            {
                int j = i / perKvHead;
                float* qi = q + ((long)r * heads + i) * headDim;
                float* yi = y + ((long)r * heads + i) * rank;
                float* b = basis + (long)(j / groupSize) * rank * basisStride + (long)(j % groupSize) * headDim;
                for (int e = 0; e < rank; e++)
                {
                    yi[e] = Kernels.Dot(qi, b + e * basisStride, headDim);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SiluMul(float* gate, float* up, float* y, long count)
    {
        for (long i = 0; i < count; i++)
        {
            float g = gate[i];
            y[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    public void Add(float* x, float* y, long count)
    {
        var xs = new Span<float>(x, checked((int)count));
        TensorPrimitives.Add(xs, new ReadOnlySpan<float>(y, (int)count), xs);
    }

    public void Dispose()
    {
        _pool.Dispose();
        NativeMemory.AlignedFree(_scores);
    }

    /// <summary>
    /// Decode/prefill attention over paged caches. An item is one row and a run of heads; each head's scores, softmax
    /// and weighted values are computed exactly as they would be alone (one fixed-order pass per head), so how heads
    /// are grouped never changes a result. Within a block the heads are visited in order: their key (and value) slabs
    /// lie one after another.
    /// </summary>
    private sealed class AttentionJob(float* scores, int scoreStride, int threadStride) : CacheAttentionJob
    {
        private AttentionRows? _rows;
        private float* _q, _out;
        private int _layer, _heads, _perItem;
        private float _scale;

        public void Set(AttentionRows rows, int layer, float* q, int heads, int perItem, float scale, float* output)
        {
            _rows = rows;
            _scale = scale;
            _layer = layer;
            _q = q;
            _heads = heads;
            _perItem = perItem;
            _out = output;
        }

        protected override bool IsBf16(int index) => _rows!.Views[index / (_heads / _perItem)].IsBf16;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void Run<TFormat, T>(int index, int thread)
        {
            var rows = _rows!;
            int items = _heads / _perItem;
            int i = index / items, h0 = index % items * _perItem, h1 = h0 + _perItem;
            ref readonly var cache = ref rows.Views[i];
            int hd = cache.HeadDim, bt = cache.BlockTokens, group = _heads / cache.KvHeads;
            int n = rows.Positions[i] + 1;
            long r = rows.Rows[i];
            float* scoreBase = scores + (long)thread * threadStride;
            float scale = _scale;

            for (int j0 = 0, b = 0; j0 < n; j0 += bt, b++)
            {
                int m = Math.Min(bt, n - j0);
                for (int h = h0; h < h1; h++)
                {
                    float* q = _q + (r * _heads + h) * hd;
                    Kernels.Scores<TFormat, T>(q, cache.Slab<T>(b, _layer, 0, h / group), m, hd, scale, scoreBase + (long)(h - h0) * scoreStride + j0, j0 + bt < n ? cache.Slab<T>(b + 1, _layer, 0, h / group) : null);
                }
            }

            float* sums = stackalloc float[MaxHeadsPerItem];
            for (int h = h0; h < h1; h++)
            {
                sums[h - h0] = Kernels.Exponentiate(scoreBase + (long)(h - h0) * scoreStride, n);
                new Span<float>(_out + (r * _heads + h) * hd, hd).Clear();
            }

            for (int j0 = 0, b = 0; j0 < n; j0 += bt, b++)
            {
                int m = Math.Min(bt, n - j0);
                for (int h = h0; h < h1; h++)
                {
                    float* s = scoreBase + (long)(h - h0) * scoreStride + j0;
                    Kernels.AccumulateValues<TFormat, T>(s, cache.Slab<T>(b, _layer, 1, h / group), m, hd, _out + (r * _heads + h) * hd, j0 + bt < n ? cache.Slab<T>(b + 1, _layer, 1, h / group) : null);
                }
            }

            for (int h = h0; h < h1; h++)
            {
                float* o = _out + (r * _heads + h) * hd;
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(o, hd), 1f / sums[h - h0], new Span<float>(o, hd));
            }
        }
    }

    /// <summary>
    /// An attention job over caches of either element format: each item runs Run specialized for its cache's format, so
    /// the kernels inline that format's loads.
    /// </summary>
    private abstract class CacheAttentionJob : ParallelJob
    {
        public sealed override void Execute(int index, int thread)
        {
            if (IsBf16(index))
            {
                Run<Bf16Weights, ushort>(index, thread);
            }
            else
            {
                Run<F32Weights, float>(index, thread);
            }
        }

        /// <summary>Whether item <paramref name="index"/> reads a bf16 cache.</summary>
        protected abstract bool IsBf16(int index);

        protected abstract void Run<TFormat, T>(int index, int thread)
            where TFormat : IWeightFormat<T>
            where T : unmanaged;
    }
}
