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
internal static unsafe partial class Kernels
{
    /// <summary>Σ x[i] · w[i] with four accumulators: the reduction of attention scores and norms (the matmul has its own, LinearDot).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Dot(float* x, float* w, int n) => Dot<F32Weights, float>(x, w, n);

    /// <summary>Dot with w in any element format: bit-identical to Dot over w's f32 widening.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float Dot<TFormat, T>(float* x, T* w, int n)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        int i = 0;
        float s;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            s = Vector512.Sum(Folded512<TFormat, T>(x, w, n, ref i));
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
    private static Vector512<float> Folded512<TFormat, T>(float* x, T* w, int n, ref int i)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (; i <= n - 64; i += 64)
        {
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
    /// [Vector512.Sum(a), Sum(b), Sum(c), Sum(d)], bit for bit, through Scores' transpose-and-add network: about a
    /// quarter of the shuffles and adds of four separate horizontal sums.
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scores(float* q, float* k, int m, int hd, float scale, float* s, float* next) =>
        Scores<F32Weights, float>(q, k, m, hd, scale, s, next);

    /// <summary>Scores over keys in any element format: bit-identical to Scores over their f32 widening.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scores<TFormat, T>(float* q, T* k, int m, int hd, float scale, float* s, T* next)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        // Dot and Axpy take their Vector512 path only where Vector512 is accelerated; so must these, or they would round differently.
        if (!Vector512.IsHardwareAccelerated || !Avx512F.IsSupported || hd % 16 != 0)
        {
            for (int key = 0; key < m; key++)
            {
                s[key] = Dot<TFormat, T>(q, k + (long)key * hd, hd) * scale;
            }

            return;
        }

        var vscale = Vector512.Create(scale);
        int t = hd == 64 ? Scores64<TFormat, T>(q, k, m, vscale, s, next) : 0;
        for (k += (long)t * hd; t < m; t += 16, k += 16L * hd)
        {
            if (next != null)
            {
                PrefetchLines(next + (long)t * hd, 16 * hd);
            }

            int c = m - t;
            var r = HalvesSum(
                HalvesSum(
                    PairSum(PairSum(Partials<TFormat, T>(q, k, hd, 0, c), Partials<TFormat, T>(q, k, hd, 1, c)), PairSum(Partials<TFormat, T>(q, k, hd, 2, c), Partials<TFormat, T>(q, k, hd, 3, c))),
                    PairSum(PairSum(Partials<TFormat, T>(q, k, hd, 4, c), Partials<TFormat, T>(q, k, hd, 5, c)), PairSum(Partials<TFormat, T>(q, k, hd, 6, c), Partials<TFormat, T>(q, k, hd, 7, c)))),
                HalvesSum(
                    PairSum(PairSum(Partials<TFormat, T>(q, k, hd, 8, c), Partials<TFormat, T>(q, k, hd, 9, c)), PairSum(Partials<TFormat, T>(q, k, hd, 10, c), Partials<TFormat, T>(q, k, hd, 11, c))),
                    PairSum(PairSum(Partials<TFormat, T>(q, k, hd, 12, c), Partials<TFormat, T>(q, k, hd, 13, c)), PairSum(Partials<TFormat, T>(q, k, hd, 14, c), Partials<TFormat, T>(q, k, hd, 15, c)))));
            Vector512.Store(r * vscale, s + t);
        }
    }

    /// <summary>
    /// Scores for head dim 64 (the benchmark model's, as in TinyLlama and Llama 3.2 1B): the query stays in four registers
    /// and each key is one straight-line Folded512 iteration, without its per-key loop bookkeeping (a bf16 key read from
    /// L1 scores in 1.6 ns instead of 2.3). Takes the whole groups of 16 keys and returns how many keys it scored; the
    /// 16-key network is Scores' own. Not inlined: within Scores the JIT would run out of inlining budget and call the
    /// vector helpers.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static int Scores64<TFormat, T>(float* q, T* k, int m, Vector512<float> vscale, float* s, T* next)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        Vector512<float> q0 = Vector512.Load(q), q1 = Vector512.Load(q + 16), q2 = Vector512.Load(q + 32), q3 = Vector512.Load(q + 48);
        int t = 0;
        for (; t <= m - 16; t += 16, k += 16 * 64)
        {
            if (next != null)
            {
                PrefetchLines(next + t * 64, 16 * 64);
            }

            var r = HalvesSum(
                HalvesSum(
                    PairSum(PairSum(Key64<TFormat, T>(q0, q1, q2, q3, k), Key64<TFormat, T>(q0, q1, q2, q3, k + 64)), PairSum(Key64<TFormat, T>(q0, q1, q2, q3, k + 128), Key64<TFormat, T>(q0, q1, q2, q3, k + 192))),
                    PairSum(PairSum(Key64<TFormat, T>(q0, q1, q2, q3, k + 256), Key64<TFormat, T>(q0, q1, q2, q3, k + 320)), PairSum(Key64<TFormat, T>(q0, q1, q2, q3, k + 384), Key64<TFormat, T>(q0, q1, q2, q3, k + 448)))),
                HalvesSum(
                    PairSum(PairSum(Key64<TFormat, T>(q0, q1, q2, q3, k + 512), Key64<TFormat, T>(q0, q1, q2, q3, k + 576)), PairSum(Key64<TFormat, T>(q0, q1, q2, q3, k + 640), Key64<TFormat, T>(q0, q1, q2, q3, k + 704))),
                    PairSum(PairSum(Key64<TFormat, T>(q0, q1, q2, q3, k + 768), Key64<TFormat, T>(q0, q1, q2, q3, k + 832)), PairSum(Key64<TFormat, T>(q0, q1, q2, q3, k + 896), Key64<TFormat, T>(q0, q1, q2, q3, k + 960)))));
            Vector512.Store(r * vscale, s + t);
        }

        return t;
    }

    /// <summary>One 64-float key's Folded512 accumulators, bit for bit: each product fused onto zero, folded in pairs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Key64<TFormat, T>(Vector512<float> q0, Vector512<float> q1, Vector512<float> q2, Vector512<float> q3, T* k)
        where TFormat : IWeightFormat<T>
        where T : unmanaged =>
        (Vector512.FusedMultiplyAdd(q0, TFormat.Load512(k), Vector512<float>.Zero) + Vector512.FusedMultiplyAdd(q1, TFormat.Load512(k + 16), Vector512<float>.Zero))
        + (Vector512.FusedMultiplyAdd(q2, TFormat.Load512(k + 32), Vector512<float>.Zero) + Vector512.FusedMultiplyAdd(q3, TFormat.Load512(k + 48), Vector512<float>.Zero));

    /// <summary>Dot's folded accumulators for key t of the group (hd a multiple of 16, so no scalar tail); zero past the keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Partials<TFormat, T>(float* q, T* k, int hd, int t, int count)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        int i = 0;
        return t < count ? Folded512<TFormat, T>(q, k + (long)t * hd, hd, ref i) : default;
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AccumulateValues(float* s, float* v, int m, int hd, float* o, float* next) =>
        AccumulateValues<F32Weights, float>(s, v, m, hd, o, next);

    /// <summary>AccumulateValues over values in any element format: bit-identical to it over their f32 widening.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateValues<TFormat, T>(float* s, T* v, int m, int hd, float* o, T* next)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        // Dot and Axpy take their Vector512 path only where Vector512 is accelerated; so must these, or they would round differently.
        if (!Vector512.IsHardwareAccelerated || !Avx512F.IsSupported || hd % 16 != 0)
        {
            for (int t = 0; t < m; t++)
            {
                Axpy<TFormat, T>(s[t], v + (long)t * hd, o, hd);
            }

            return;
        }

        int c = 0;
        for (; c <= hd - 64; c += 64)
        {
            Vector512<float> o0 = Vector512.Load(o + c), o1 = Vector512.Load(o + c + 16), o2 = Vector512.Load(o + c + 32), o3 = Vector512.Load(o + c + 48);
            T* row = v + c;
            T* ahead = next + c;
            for (int t = 0; t < m; t++, row += hd, ahead += hd)
            {
                if (next != null)
                {
                    PrefetchLines(ahead, 64);
                }

                var st = Vector512.Create(s[t]);
                o0 = Vector512.FusedMultiplyAdd(st, TFormat.Load512(row), o0);
                o1 = Vector512.FusedMultiplyAdd(st, TFormat.Load512(row + 16), o1);
                o2 = Vector512.FusedMultiplyAdd(st, TFormat.Load512(row + 32), o2);
                o3 = Vector512.FusedMultiplyAdd(st, TFormat.Load512(row + 48), o3);
            }

            Vector512.Store(o0, o + c);
            Vector512.Store(o1, o + c + 16);
            Vector512.Store(o2, o + c + 32);
            Vector512.Store(o3, o + c + 48);
        }

        for (; c < hd; c += 16)
        {
            var oc = Vector512.Load(o + c);
            T* row = v + c;
            for (int t = 0; t < m; t++, row += hd)
            {
                oc = Vector512.FusedMultiplyAdd(Vector512.Create(s[t]), TFormat.Load512(row), oc);
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
    public static void Axpy(float alpha, float* x, float* y, int n) => Axpy<F32Weights, float>(alpha, x, y, n);

    /// <summary>Axpy with x in any element format: bit-identical to Axpy over x's f32 widening.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Axpy<TFormat, T>(float alpha, T* x, float* y, int n)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(alpha);
            for (; i <= n - 16; i += 16)
            {
                Vector512.Store(Vector512.FusedMultiplyAdd(va, TFormat.Load512(x + i), Vector512.Load(y + i)), y + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            for (; i <= n - 8; i += 8)
            {
                Vector256.Store(Vector256.FusedMultiplyAdd(va, TFormat.Load256(x + i), Vector256.Load(y + i)), y + i);
            }
        }

        for (; i < n; i++)
        {
            y[i] = MathF.FusedMultiplyAdd(alpha, TFormat.Load(x + i), y[i]);
        }
    }

    /// <summary>Prefetches into L1 the cache lines of <paramref name="count"/> elements from <paramref name="p"/> on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchLines<T>(T* p, int count)
        where T : unmanaged
    {
        // Prefetches never fault, so running past the end of a matrix or slab is harmless.
        for (int i = 0; i < count * sizeof(T); i += 64)
        {
            Sse.Prefetch0((byte*)p + i);
        }
    }
}

/// <summary>
/// How a weight matrix or a cache's keys and values are stored. Loads widen to f32 lanes, so every format runs the
/// kernels' arithmetic unchanged and narrow operands give bit-identical results to their f32 widening. A struct type
/// argument specializes and inlines the loads: no indirection in the hot loops.
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
