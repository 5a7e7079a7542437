using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>
/// YOCO and FusedKV kernels. Like <see cref="AttentionJob"/>, each (row, head) is one fixed-order pass over its keys
/// in position order, whatever buffer a key comes from, so any chunking gives bit-identical results.
/// </summary>
internal sealed unsafe partial class CpuBackend
{
    private readonly SlidingAttentionJob _sliding;
    private readonly FusedAttentionJob _fused;
    private readonly RetentionJob _retention = new();

    public void SlidingAttention(in KvView ring, float* q, float* k, float* v, int rows, int heads, int startPosition, int window, float scale, float* output)
    {
        int count = rows * heads;
        bool parallel = count > 1 && (long)count * Math.Min(window, startPosition + rows) * ring.HeadDim >= ParallelThreshold;
        if (ring.IsBf16)
        {
            int width = rows * ring.KvHeads * ring.HeadDim;
            Bf16.Round(new Span<float>(k, width));
            Bf16.Round(new Span<float>(v, width));
        }

        lock (_gate)
        {
            _sliding.Set(ring, q, k, v, heads, startPosition, window, scale, output);
            _pool.Run(_sliding, count, inline: !parallel);
        }
    }

    public void StoreRing(in KvView ring, float* k, float* v, int rows, int startPosition, int window)
    {
        int hd = ring.HeadDim;

        // Rows more than a window before the last would be overwritten within this call.
        for (int r = Math.Max(0, rows - window); r < rows; r++)
        {
            int slot = (startPosition + r) % window;
            long inBlock = (long)(slot % ring.BlockTokens) * hd;
            for (int g = 0; g < ring.KvHeads; g++)
            {
                long src = ((long)r * ring.KvHeads + g) * hd;
                StoreVector(ring, slot / ring.BlockTokens, 0, 0, g, inBlock, new ReadOnlySpan<float>(k + src, hd));
                StoreVector(ring, slot / ring.BlockTokens, 0, 1, g, inBlock, new ReadOnlySpan<float>(v + src, hd));
            }
        }
    }

    public void GatedRetention(in RetentionState state, float* q, float* k, float* v, float* decayLogits, int rows, int heads, float normalizer, float eps, float* output)
    {
        int d = state.Dim;
        bool parallel = heads > 1 && 3L * rows * heads * d * d >= ParallelThreshold;
        lock (_gate)
        {
            _retention.Set(state, q, k, v, decayLogits, rows, heads, normalizer, eps, output);
            _pool.Run(_retention, heads, inline: !parallel);
        }
    }

    public void FusedAttention(in KvView cache, in KvFusion fusion, float* q, int rows, int heads, int startPosition, float scale, float* output)
    {
        int count = rows * heads;
        bool parallel = count > 1 && (long)count * (startPosition + rows) * cache.HeadDim >= ParallelThreshold;
        lock (_gate)
        {
            _fused.Set(cache, fusion, q, heads, startPosition, scale, output);
            _pool.Run(_fused, count, inline: !parallel);
        }
    }

    private sealed class SlidingAttentionJob(float* scores, int scoreStride) : CacheAttentionJob
    {
        private KvView _ring;
        private float* _q, _k, _v, _out;
        private int _heads, _start, _window;
        private float _scale;

        public void Set(in KvView ring, float* q, float* k, float* v, int heads, int startPosition, int window, float scale, float* output)
        {
            _ring = ring;
            _q = q;
            _k = k;
            _v = v;
            _heads = heads;
            _start = startPosition;
            _window = window;
            _scale = scale;
            _out = output;
        }

        protected override bool IsBf16(int index) => _ring.IsBf16;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void Run<TFormat, T>(int index, int thread)
        {
            int r = index / _heads, h = index % _heads;
            int hd = _ring.HeadDim, kvHeads = _ring.KvHeads;
            int g = h / (_heads / kvHeads);
            int p = _start + r, lo = Math.Max(0, p - _window + 1), n = p - lo + 1;
            float* q = _q + ((long)r * _heads + h) * hd;
            float* o = _out + ((long)r * _heads + h) * hd;
            float* s = scores + (long)thread * scoreStride;
            int ringEnd = Math.Min(p + 1, _start);
            for (int j = lo, run; j < ringEnd; j += run)
            {
                run = RingRun(j, ringEnd);
                Kernels.Scores<TFormat, T>(q, Slot<T>(j, 0, g), run, hd, _scale, s + (j - lo), j + run < ringEnd ? Slot<T>(j + run, 0, g) : null);
            }

            for (int j = Math.Max(lo, _start); j <= p; j++)
            {
                s[j - lo] = Kernels.Dot(q, Row(j, 0, g), hd) * _scale;
            }

            float sum = Kernels.Exponentiate(s, n);
            new Span<float>(o, hd).Clear();
            for (int j = lo, run; j < ringEnd; j += run)
            {
                run = RingRun(j, ringEnd);
                Kernels.AccumulateValues<TFormat, T>(s + (j - lo), Slot<T>(j, 1, g), run, hd, o, j + run < ringEnd ? Slot<T>(j + run, 1, g) : null);
            }

            for (int j = Math.Max(lo, _start); j <= p; j++)
            {
                Kernels.Axpy(s[j - lo], Row(j, 1, g), o, hd);
            }

            TensorPrimitives.Multiply(new ReadOnlySpan<float>(o, hd), 1f / sum, new Span<float>(o, hd));
        }

        /// <summary>How many ring positions from <paramref name="position"/> (before <paramref name="end"/>) lie in consecutive slots of one block.</summary>
        private int RingRun(int position, int end)
        {
            int slot = position % _window;
            return Math.Min(end - position, Math.Min(_ring.BlockTokens - slot % _ring.BlockTokens, _window - slot));
        }

        // Positions before this call live in the ring; the call's own rows are still in k, v.
        private T* Slot<T>(int position, int kind, int g)
            where T : unmanaged
        {
            int slot = position % _window;
            return _ring.Slab<T>(slot / _ring.BlockTokens, 0, kind, g) + (long)(slot % _ring.BlockTokens) * _ring.HeadDim;
        }

        private float* Row(int position, int kind, int g) =>
            (kind == 0 ? _k : _v) + ((long)(position - _start) * _ring.KvHeads + g) * _ring.HeadDim;
    }

    /// <summary>
    /// One item per head: its state stays in L1 while the call's rows advance it one position at a time (the
    /// recurrent form; a chunk-parallel form would round differently from the token-by-token decode that replays it).
    /// </summary>
    private sealed class RetentionJob : ParallelJob
    {
        private RetentionState _state;
        private float* _q, _k, _v, _decay, _out;
        private int _rows, _heads;
        private float _normalizer, _eps;

        public void Set(in RetentionState state, float* q, float* k, float* v, float* decayLogits, int rows, int heads, float normalizer, float eps, float* output)
        {
            _state = state;
            _q = q;
            _k = k;
            _v = v;
            _decay = decayLogits;
            _rows = rows;
            _heads = heads;
            _normalizer = normalizer;
            _eps = eps;
            _out = output;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int index, int thread)
        {
            int h = index, d = _state.Dim;
            float scale = 1f / MathF.Sqrt(d);
            Span<float> key = stackalloc float[d];
            for (int r = 0; r < _rows; r++)
            {
                long at = ((long)r * _heads + h) * d;
                var v = new ReadOnlySpan<float>(_v + at, d);
                var o = new Span<float>(_out + at, d);
                float* q = _q + at;
                float gamma = Decay(_decay[(long)r * _heads + h], _normalizer);
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(_k + at, d), scale, key);
                o.Clear();
                for (int i = 0; i < d; i++)
                {
                    // S[i,:] = γ S[i,:] + k̃[i] v, then o += q[i] S[i,:]: one pass over the state per position.
                    var row = new Span<float>(_state.Row(h * d + i), d);
                    TensorPrimitives.Multiply(row, gamma, row);
                    TensorPrimitives.FusedMultiplyAdd(v, key[i], row, row);
                    TensorPrimitives.FusedMultiplyAdd(row, q[i], o, o);
                }

                float* po = _out + at;
                TensorPrimitives.Multiply(o, 1f / MathF.Sqrt(Kernels.Dot(po, po, d) / d + _eps), o);
            }
        }

        /// <summary>γ = sigmoid(z)^(1/τ) = exp(logsigmoid(z) / τ), with logsigmoid(z) = min(z, 0) − log(1 + e^−|z|) (no overflow).</summary>
        private static float Decay(float z, float normalizer) =>
            (float)Math.Exp((Math.Min(z, 0.0) - double.LogP1(Math.Exp(-Math.Abs((double)z)))) / normalizer);
    }

    private sealed class FusedAttentionJob(float* scores, int scoreStride, int threadStride) : CacheAttentionJob
    {
        private KvView _cache;
        private KvFusion _fusion;
        private float* _q, _out;
        private int _heads, _start;
        private float _scale;

        public void Set(in KvView cache, in KvFusion fusion, float* q, int heads, int startPosition, float scale, float* output)
        {
            _cache = cache;
            _fusion = fusion;
            _q = q;
            _heads = heads;
            _start = startPosition;
            _scale = scale;
            _out = output;
        }

        protected override bool IsBf16(int index) => _cache.IsBf16;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void Run<TFormat, T>(int index, int thread)
        {
            int r = index / _heads, h = index % _heads;
            int hd = _cache.HeadDim, bt = _cache.BlockTokens, kvDim = _cache.KvHeads * hd;
            int g = h / (_heads / _cache.KvHeads);
            int n = _start + r + 1;
            int first = _fusion.FirstLayer, last = _fusion.LastLayer;
            float* q = _q + ((long)r * _heads + h) * hd;
            float* o = _out + ((long)r * _heads + h) * hd;
            float* s = scores + (long)thread * threadStride;

            // q · (a₁ ⊙ k₁ + aₙ ⊙ kₙ) = (q ⊙ a₁) · k₁ + (q ⊙ aₙ) · kₙ: fold the key weights into the query once.
            float* qFirst = stackalloc float[hd];
            float* qLast = stackalloc float[hd];
            float* a = _fusion.A;
            if (a != null)
            {
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(q, hd), new ReadOnlySpan<float>(a + g * hd, hd), new Span<float>(qFirst, hd));
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(q, hd), new ReadOnlySpan<float>(a + kvDim + g * hd, hd), new Span<float>(qLast, hd));
            }

            float* sLast = s + scoreStride; // the second layer's dots, a block at a time
            for (int j0 = 0, b = 0; j0 < n; j0 += bt, b++)
            {
                int m = Math.Min(bt, n - j0);
                bool more = j0 + bt < n;
                T* kLast = _cache.Slab<T>(b, last, 0, g);
                if (a == null)
                {
                    Kernels.Scores<TFormat, T>(q, kLast, m, hd, _scale, s + j0, more ? _cache.Slab<T>(b + 1, last, 0, g) : null);
                    continue;
                }

                Kernels.Scores<TFormat, T>(qFirst, _cache.Slab<T>(b, first, 0, g), m, hd, 1f, s + j0, more ? _cache.Slab<T>(b + 1, first, 0, g) : null);
                Kernels.Scores<TFormat, T>(qLast, kLast, m, hd, 1f, sLast, more ? _cache.Slab<T>(b + 1, last, 0, g) : null);
                for (int t = 0; t < m; t++)
                {
                    s[j0 + t] = (s[j0 + t] + sLast[t]) * _scale;
                }
            }

            float sum = Kernels.Exponentiate(s, n);

            // Σ s (b₁ ⊙ v₁ + bₙ ⊙ vₙ) = b₁ ⊙ Σ s v₁ + bₙ ⊙ Σ s vₙ: accumulate both layers, weight once.
            float* b1 = _fusion.B;
            float* oLast = qLast;
            new Span<float>(o, hd).Clear();
            new Span<float>(oLast, hd).Clear();
            for (int j0 = 0, blk = 0; j0 < n; j0 += bt, blk++)
            {
                int m = Math.Min(bt, n - j0);
                bool more = j0 + bt < n;
                Kernels.AccumulateValues<TFormat, T>(s + j0, _cache.Slab<T>(blk, first, 1, g), m, hd, o, more ? _cache.Slab<T>(blk + 1, first, 1, g) : null);
                if (b1 != null)
                {
                    Kernels.AccumulateValues<TFormat, T>(s + j0, _cache.Slab<T>(blk, last, 1, g), m, hd, oLast, more ? _cache.Slab<T>(blk + 1, last, 1, g) : null);
                }
            }

            var output = new Span<float>(o, hd);
            if (b1 != null)
            {
                TensorPrimitives.Multiply(output, new ReadOnlySpan<float>(b1 + g * hd, hd), output);
                TensorPrimitives.FusedMultiplyAdd(new ReadOnlySpan<float>(oLast, hd), new ReadOnlySpan<float>(b1 + kvDim + g * hd, hd), output, output);
            }

            TensorPrimitives.Multiply(output, 1f / sum, output);
        }
    }
}
