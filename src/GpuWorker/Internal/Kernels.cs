using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Reductions whose summation order depends only on the length, never on pointer alignment or on how many
/// rows a caller processes. TensorPrimitives.Dot/Sum peel to align the first operand, which would make a
/// row's result depend on where it sits in a chunk buffer and break batch invariance.
/// Hot loops are AggressiveOptimization: tier-0 Vector512 code is ~50x slower and a decode step would
/// otherwise run unoptimized until tiering catches up.
/// </summary>
internal static unsafe class Kernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Dot(float* a, float* b, int n) => Dot<F32Weights, float>(a, b, n);

    /// <summary>Dot with the weight-side operand w in any format: bit-identical to Dot over w's f32 widening.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Dot<TFormat, T>(float* x, T* w, int n)
        where TFormat : IWeightFormat<T>
        where T : unmanaged =>
        Dot<TFormat, T>(x, w, n, prefetch: false);

    /// <summary>
    /// Dot that, with <paramref name="prefetch"/>, also asks for the weight bytes <see cref="WeightPrefetchBytes"/>
    /// ahead of those its Vector512 steps read: for a matmul streaming its weights from memory. Same arithmetic either way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Dot<TFormat, T>(float* x, T* w, int n, bool prefetch)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        int i = 0;
        float s;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            s = Vector512.Sum(Folded512<TFormat, T>(x, w, n, ref i, prefetch));
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (; i <= n - 32; i += 32)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), TFormat.Load256(w + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 8), TFormat.Load256(w + i + 8), acc1);
                acc2 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 16), TFormat.Load256(w + i + 16), acc2);
                acc3 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 24), TFormat.Load256(w + i + 24), acc3);
            }

            for (; i <= n - 8; i += 8)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), TFormat.Load256(w + i), acc0);
            }

            s = Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
        }
        else
        {
            s = 0;
        }

        return Tail<TFormat, T>(x, w, i, n, s);
    }

    /// <summary>
    /// Dot's Vector512 body: four accumulators over 64-float steps, then 16-float steps into the first, folded as
    /// (acc0 + acc1) + (acc2 + acc3) before the lane sum. Advances <paramref name="i"/> past the elements it took.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Folded512<TFormat, T>(float* x, T* w, int n, ref int i, bool prefetch = false)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (; i <= n - 64; i += 64)
        {
            if (prefetch)
            {
                PrefetchWeights(w + i);
            }

            acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), TFormat.Load512(w + i), acc0);
            acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 16), TFormat.Load512(w + i + 16), acc1);
            acc2 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 32), TFormat.Load512(w + i + 32), acc2);
            acc3 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 48), TFormat.Load512(w + i + 48), acc3);
        }

        for (; i <= n - 16; i += 16)
        {
            acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), TFormat.Load512(w + i), acc0);
        }

        return (acc0 + acc1) + (acc2 + acc3);
    }

    /// <summary>
    /// How far ahead of its reads a streaming matmul prefetches its weights. 8 KiB was slower than 4 KiB on the
    /// 3072-wide matrix, whose four token rows fill L1: lines fetched that early are evicted before they are used.
    /// </summary>
    public const int WeightPrefetchBytes = 4096;

    /// <summary>Prefetches the lines of 64 weights (one Folded512 or Dot4 step) WeightPrefetchBytes ahead of <paramref name="w"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchWeights<T>(T* w)
        where T : unmanaged
    {
        // Prefetches never fault, so running past the end of the matrix is harmless.
        byte* ahead = (byte*)w + WeightPrefetchBytes;
        for (int line = 0; line < 64 * sizeof(T); line += 64)
        {
            Sse.Prefetch0(ahead + line);
        }
    }

    /// <summary>
    /// y[r * yStride] = Dot(x + r * xStride, w, n) for r in 0..3, bit for bit: each weight load feeds four rows'
    /// FMAs (a batch reads its weights once) and each row keeps Dot's own accumulators, steps and reduction.
    /// <paramref name="prefetch"/>: as for Dot.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot4<TFormat, T>(float* x, long xStride, T* w, int n, float* y, long yStride, bool prefetch)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        if (!Vector512.IsHardwareAccelerated || !Avx512F.IsSupported || n < 16)
        {
            for (int r = 0; r < 4; r++)
            {
                y[r * yStride] = Dot<TFormat, T>(x + r * xStride, w, n);
            }

            return;
        }

        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        int i = 0;
        for (; i <= n - 64; i += 64)
        {
            if (prefetch)
            {
                PrefetchWeights(w + i);
            }

            var w0 = TFormat.Load512(w + i);
            a00 = Vector512.FusedMultiplyAdd(Vector512.Load(x0 + i), w0, a00);
            a10 = Vector512.FusedMultiplyAdd(Vector512.Load(x1 + i), w0, a10);
            a20 = Vector512.FusedMultiplyAdd(Vector512.Load(x2 + i), w0, a20);
            a30 = Vector512.FusedMultiplyAdd(Vector512.Load(x3 + i), w0, a30);
            var w1 = TFormat.Load512(w + i + 16);
            a01 = Vector512.FusedMultiplyAdd(Vector512.Load(x0 + i + 16), w1, a01);
            a11 = Vector512.FusedMultiplyAdd(Vector512.Load(x1 + i + 16), w1, a11);
            a21 = Vector512.FusedMultiplyAdd(Vector512.Load(x2 + i + 16), w1, a21);
            a31 = Vector512.FusedMultiplyAdd(Vector512.Load(x3 + i + 16), w1, a31);
            var w2 = TFormat.Load512(w + i + 32);
            a02 = Vector512.FusedMultiplyAdd(Vector512.Load(x0 + i + 32), w2, a02);
            a12 = Vector512.FusedMultiplyAdd(Vector512.Load(x1 + i + 32), w2, a12);
            a22 = Vector512.FusedMultiplyAdd(Vector512.Load(x2 + i + 32), w2, a22);
            a32 = Vector512.FusedMultiplyAdd(Vector512.Load(x3 + i + 32), w2, a32);
            var w3 = TFormat.Load512(w + i + 48);
            a03 = Vector512.FusedMultiplyAdd(Vector512.Load(x0 + i + 48), w3, a03);
            a13 = Vector512.FusedMultiplyAdd(Vector512.Load(x1 + i + 48), w3, a13);
            a23 = Vector512.FusedMultiplyAdd(Vector512.Load(x2 + i + 48), w3, a23);
            a33 = Vector512.FusedMultiplyAdd(Vector512.Load(x3 + i + 48), w3, a33);
        }

        for (; i <= n - 16; i += 16)
        {
            var w0 = TFormat.Load512(w + i);
            a00 = Vector512.FusedMultiplyAdd(Vector512.Load(x0 + i), w0, a00);
            a10 = Vector512.FusedMultiplyAdd(Vector512.Load(x1 + i), w0, a10);
            a20 = Vector512.FusedMultiplyAdd(Vector512.Load(x2 + i), w0, a20);
            a30 = Vector512.FusedMultiplyAdd(Vector512.Load(x3 + i), w0, a30);
        }

        var sums = Sum4((a00 + a01) + (a02 + a03), (a10 + a11) + (a12 + a13), (a20 + a21) + (a22 + a23), (a30 + a31) + (a32 + a33));
        y[0] = Tail<TFormat, T>(x0, w, i, n, sums.GetElement(0));
        y[yStride] = Tail<TFormat, T>(x1, w, i, n, sums.GetElement(1));
        y[2 * yStride] = Tail<TFormat, T>(x2, w, i, n, sums.GetElement(2));
        y[3 * yStride] = Tail<TFormat, T>(x3, w, i, n, sums.GetElement(3));
    }

    /// <summary>
    /// [Vector512.Sum(a), Sum(b), Sum(c), Sum(d)], bit for bit, through Scores' transpose-and-add network: about a
    /// quarter of the shuffles and adds of four separate horizontal sums, which were a fifth of a 768-wide Dot4's instructions.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Sum4(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var quarters = PairSum(PairSum(a, b), PairSum(c, d));
        var halves = HalvesSum(quarters, quarters);
        return HalvesSum(halves, halves).GetLower().GetLower();
    }

    /// <summary>Dot's scalar tail: elements [i, n) fused into s one at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail<TFormat, T>(float* x, T* w, int i, int n, float s)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        for (; i < n; i++)
        {
            s = MathF.FusedMultiplyAdd(x[i], TFormat.Load(w + i), s);
        }

        return s;
    }

    /// <summary>
    /// Attention scores of one query against m consecutive keys of hd floats: s[t] = Dot(q, k + t·hd, hd) · scale, bit for
    /// bit, sixteen keys at a time. Each key's accumulators are folded as Dot folds them, then sixteen keys' lanes go
    /// through one transpose-and-add network whose additions pair lanes exactly as Vector512.Sum does, so a key costs
    /// about three adds and shuffles instead of a whole horizontal sum. s needs room for m rounded up to 16.
    /// When <paramref name="next"/> is not null, the same rows of that slab are prefetched as these are read: paged caches
    /// jump to another block every few KiB, where the hardware prefetchers, which stop at page boundaries, lose track.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scores(float* q, float* k, int m, int hd, float scale, float* s, float* next)
    {
        // Dot and Axpy take their Vector512 path only where Vector512 is accelerated; so must these, or they would round differently.
        if (!Vector512.IsHardwareAccelerated || !Avx512F.IsSupported || hd % 16 != 0)
        {
            for (int t = 0; t < m; t++)
            {
                s[t] = Dot(q, k + (long)t * hd, hd) * scale;
            }

            return;
        }

        var vscale = Vector512.Create(scale);
        for (int t = 0; t < m; t += 16, k += 16L * hd)
        {
            if (next != null)
            {
                for (int i = 0; i < 16 * hd; i += 16)
                {
                    Sse.Prefetch0(next + (long)t * hd + i);
                }
            }

            int c = m - t;
            var r = HalvesSum(
                HalvesSum(
                    PairSum(PairSum(Partials(q, k, hd, 0, c), Partials(q, k, hd, 1, c)), PairSum(Partials(q, k, hd, 2, c), Partials(q, k, hd, 3, c))),
                    PairSum(PairSum(Partials(q, k, hd, 4, c), Partials(q, k, hd, 5, c)), PairSum(Partials(q, k, hd, 6, c), Partials(q, k, hd, 7, c)))),
                HalvesSum(
                    PairSum(PairSum(Partials(q, k, hd, 8, c), Partials(q, k, hd, 9, c)), PairSum(Partials(q, k, hd, 10, c), Partials(q, k, hd, 11, c))),
                    PairSum(PairSum(Partials(q, k, hd, 12, c), Partials(q, k, hd, 13, c)), PairSum(Partials(q, k, hd, 14, c), Partials(q, k, hd, 15, c)))));
            Vector512.Store(r * vscale, s + t);
        }
    }

    /// <summary>Dot's folded accumulators for key t of the group (hd a multiple of 16, so no scalar tail); zero past the keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Partials(float* q, float* k, int hd, int t, int count)
    {
        int i = 0;
        return t < count ? Folded512<F32Weights, float>(q, k + (long)t * hd, hd, ref i) : default;
    }

    /// <summary>
    /// Within each 128-bit quarter, adjacent lane pairs of a and of b: [a0+a1, a2+a3, b0+b1, b2+b3]. Applied to two such
    /// results it gives each quarter's sum ((x0+x1)+(x2+x3)) for four keys.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairSum(Vector512<float> a, Vector512<float> b) =>
        Avx512F.Shuffle(a, b, 0b10_00_10_00) + Avx512F.Shuffle(a, b, 0b11_01_11_01);

    /// <summary>Adjacent 128-bit quarters of a and of b added: [a0+a1, a2+a3, b0+b1, b2+b3] in quarters.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalvesSum(Vector512<float> a, Vector512<float> b) =>
        Avx512F.Shuffle4x128(a, b, 0b10_00_10_00) + Avx512F.Shuffle4x128(a, b, 0b11_01_11_01);

    /// <summary>
    /// o[0, hd) += Σ s[t] · v[t·hd ..] over t in [0, m) in key order: bit for bit m successive Axpy calls, with o held in
    /// registers across the keys instead of stored and reloaded after each one. <paramref name="next"/>: as for Scores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateValues(float* s, float* v, int m, int hd, float* o, float* next)
    {
        // Dot and Axpy take their Vector512 path only where Vector512 is accelerated; so must these, or they would round differently.
        if (!Vector512.IsHardwareAccelerated || !Avx512F.IsSupported || hd % 16 != 0)
        {
            for (int t = 0; t < m; t++)
            {
                Axpy(s[t], v + (long)t * hd, o, hd);
            }

            return;
        }

        int c = 0;
        for (; c <= hd - 64; c += 64)
        {
            Vector512<float> o0 = Vector512.Load(o + c), o1 = Vector512.Load(o + c + 16), o2 = Vector512.Load(o + c + 32), o3 = Vector512.Load(o + c + 48);
            float* row = v + c;
            float* ahead = next + c;
            for (int t = 0; t < m; t++, row += hd, ahead += hd)
            {
                if (next != null)
                {
                    Sse.Prefetch0(ahead);
                    Sse.Prefetch0(ahead + 16);
                    Sse.Prefetch0(ahead + 32);
                    Sse.Prefetch0(ahead + 48);
                }

                var st = Vector512.Create(s[t]);
                o0 = Vector512.FusedMultiplyAdd(st, Vector512.Load(row), o0);
                o1 = Vector512.FusedMultiplyAdd(st, Vector512.Load(row + 16), o1);
                o2 = Vector512.FusedMultiplyAdd(st, Vector512.Load(row + 32), o2);
                o3 = Vector512.FusedMultiplyAdd(st, Vector512.Load(row + 48), o3);
            }

            Vector512.Store(o0, o + c);
            Vector512.Store(o1, o + c + 16);
            Vector512.Store(o2, o + c + 32);
            Vector512.Store(o3, o + c + 48);
        }

        for (; c < hd; c += 16)
        {
            var oc = Vector512.Load(o + c);
            float* row = v + c;
            for (int t = 0; t < m; t++, row += hd)
            {
                oc = Vector512.FusedMultiplyAdd(Vector512.Create(s[t]), Vector512.Load(row), oc);
            }

            Vector512.Store(oc, o + c);
        }
    }

    /// <summary>
    /// The unnormalized softmax of attention scores: s[i] = exp(s[i] - max s) in place, and their sum. One op order for
    /// every attention kernel, whatever its cache.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Exponentiate(float* s, int n)
    {
        var span = new Span<float>(s, n);
        float max = TensorPrimitives.Max(span);
        TensorPrimitives.Subtract(span, max, span);
        TensorPrimitives.Exp(span, span);
        return Sum(s, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Sum(float* a, int n)
    {
        int i = 0;
        float s;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> acc0 = default, acc1 = default;
            for (; i <= n - 32; i += 32)
            {
                acc0 += Vector512.Load(a + i);
                acc1 += Vector512.Load(a + i + 16);
            }

            for (; i <= n - 16; i += 16)
            {
                acc0 += Vector512.Load(a + i);
            }

            s = Vector512.Sum(acc0 + acc1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            Vector256<float> acc0 = default;
            for (; i <= n - 8; i += 8)
            {
                acc0 += Vector256.Load(a + i);
            }

            s = Vector256.Sum(acc0);
        }
        else
        {
            s = 0;
        }

        for (; i < n; i++)
        {
            s += a[i];
        }

        return s;
    }

    /// <summary>y += alpha * x, fused per element, so vector body and scalar tail round identically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Axpy(float alpha, float* x, float* y, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(alpha);
            for (; i <= n - 16; i += 16)
            {
                Vector512.Store(Vector512.FusedMultiplyAdd(va, Vector512.Load(x + i), Vector512.Load(y + i)), y + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            for (; i <= n - 8; i += 8)
            {
                Vector256.Store(Vector256.FusedMultiplyAdd(va, Vector256.Load(x + i), Vector256.Load(y + i)), y + i);
            }
        }

        for (; i < n; i++)
        {
            y[i] = MathF.FusedMultiplyAdd(alpha, x[i], y[i]);
        }
    }


}

/// <summary>
/// How a weight matrix is stored. Loads widen to f32 lanes, so every format runs the kernels' arithmetic unchanged
/// and a narrow matrix gives bit-identical results to its f32 widening. A struct type argument specializes and
/// inlines the loads: no indirection in the hot loops.
/// </summary>
internal unsafe interface IWeightFormat<T>
    where T : unmanaged
{
    static abstract Vector512<float> Load512(T* p);

    static abstract Vector256<float> Load256(T* p);

    static abstract float Load(T* p);
}

internal readonly unsafe struct F32Weights : IWeightFormat<float>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(float* p) => Vector512.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(float* p) => Vector256.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(float* p) => *p;
}

/// <summary>bf16 is the upper half of an f32: widening is a zero-extend and a 16-bit shift, exact.</summary>
internal readonly unsafe struct Bf16Weights : IWeightFormat<ushort>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ushort* p) =>
        Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load(p).ToVector512Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ushort* p) =>
        Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(ushort* p) => Bf16.ToSingle(*p);
}
