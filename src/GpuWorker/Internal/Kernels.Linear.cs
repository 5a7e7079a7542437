using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// The matmul's reduction. Each output is <see cref="LinearDot"/>: one accumulator of 16 lanes, fused along the row
/// in order, then summed across lanes and finished by a scalar tail. One accumulator per (token row, output) pair,
/// rather than Dot's four, lets a tile of token rows × outputs keep every pair in registers: each input load feeds
/// several outputs and each weight load several rows, where Dot's four accumulators left room only to share the
/// weight load. Every tile computes each pair exactly as LinearDot does, so results never depend on the tiling or
/// on how many rows share a call.
/// </summary>
internal static unsafe partial class Kernels
{
    /// <summary>Outputs per <see cref="LinearTile4x6"/>.</summary>
    public const int Tile4Outputs = 6;

    /// <summary>Outputs per <see cref="LinearTile1x8"/>.</summary>
    public const int Tile1Outputs = 8;

    /// <summary>Σ x[i] · w[i] in the matmul's order (see the class remarks); w's format widens exactly to f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float LinearDot<TFormat, T>(float* x, T* w, int n)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        int i = 0;
        float s = 0;
        if (LinearVectorized(n))
        {
            Vector512<float> acc = default;
            for (; i <= n - 16; i += 16)
            {
                acc = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), TFormat.Load512(w + i), acc);
            }

            s = Vector512.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            Vector256<float> acc = default;
            for (; i <= n - 8; i += 8)
            {
                acc = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), TFormat.Load256(w + i), acc);
            }

            s = Vector256.Sum(acc);
        }

        return Tail<TFormat, T>(x, w, i, n, s);
    }

    /// <summary>
    /// y[r · yStride + o] = LinearDot(x + r · xStride, w + o · wStride, n) for 4 token rows and 6 weight rows, bit for
    /// bit. 24 accumulators: per 16 lanes, 4 input loads and 6 weight loads feed 24 FMAs. With
    /// <paramref name="prefetch"/> (the sweep that streams the weights from memory) each weight row is prefetched
    /// <see cref="PrefetchElements"/> ahead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LinearTile4x6<TFormat, T>(float* x, long xStride, T* w, long wStride, int n, float* y, long yStride, bool prefetch)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        if (!LinearVectorized(n))
        {
            for (int r = 0; r < 4; r++)
            {
                for (int o = 0; o < Tile4Outputs; o++)
                {
                    y[r * yStride + o] = LinearDot<TFormat, T>(x + r * xStride, w + o * wStride, n);
                }
            }

            return;
        }

        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        T* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride, w4 = w + 4 * wStride, w5 = w + 5 * wStride;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a24 = default, a25 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default, a34 = default, a35 = default;
        int i = 0;
        for (; i <= n - 16; i += 16)
        {
            // Unrolled like the FMAs: a loop over the six rows made four-row matmuls 6-10% slower.
            if (prefetch && (i & 63) == 0)
            {
                T* next = w0 + Ahead(i, n, Tile4Outputs * wStride);
                PrefetchLines(next, 64);
                PrefetchLines(next + wStride, 64);
                PrefetchLines(next + 2 * wStride, 64);
                PrefetchLines(next + 3 * wStride, 64);
                PrefetchLines(next + 4 * wStride, 64);
                PrefetchLines(next + 5 * wStride, 64);
            }

            var v0 = Vector512.Load(x0 + i);
            var v1 = Vector512.Load(x1 + i);
            var v2 = Vector512.Load(x2 + i);
            var v3 = Vector512.Load(x3 + i);
            var k = TFormat.Load512(w0 + i);
            a00 = Vector512.FusedMultiplyAdd(v0, k, a00);
            a10 = Vector512.FusedMultiplyAdd(v1, k, a10);
            a20 = Vector512.FusedMultiplyAdd(v2, k, a20);
            a30 = Vector512.FusedMultiplyAdd(v3, k, a30);
            k = TFormat.Load512(w1 + i);
            a01 = Vector512.FusedMultiplyAdd(v0, k, a01);
            a11 = Vector512.FusedMultiplyAdd(v1, k, a11);
            a21 = Vector512.FusedMultiplyAdd(v2, k, a21);
            a31 = Vector512.FusedMultiplyAdd(v3, k, a31);
            k = TFormat.Load512(w2 + i);
            a02 = Vector512.FusedMultiplyAdd(v0, k, a02);
            a12 = Vector512.FusedMultiplyAdd(v1, k, a12);
            a22 = Vector512.FusedMultiplyAdd(v2, k, a22);
            a32 = Vector512.FusedMultiplyAdd(v3, k, a32);
            k = TFormat.Load512(w3 + i);
            a03 = Vector512.FusedMultiplyAdd(v0, k, a03);
            a13 = Vector512.FusedMultiplyAdd(v1, k, a13);
            a23 = Vector512.FusedMultiplyAdd(v2, k, a23);
            a33 = Vector512.FusedMultiplyAdd(v3, k, a33);
            k = TFormat.Load512(w4 + i);
            a04 = Vector512.FusedMultiplyAdd(v0, k, a04);
            a14 = Vector512.FusedMultiplyAdd(v1, k, a14);
            a24 = Vector512.FusedMultiplyAdd(v2, k, a24);
            a34 = Vector512.FusedMultiplyAdd(v3, k, a34);
            k = TFormat.Load512(w5 + i);
            a05 = Vector512.FusedMultiplyAdd(v0, k, a05);
            a15 = Vector512.FusedMultiplyAdd(v1, k, a15);
            a25 = Vector512.FusedMultiplyAdd(v2, k, a25);
            a35 = Vector512.FusedMultiplyAdd(v3, k, a35);
        }

        // One output's four rows per lane sum: Sum4 gives each row exactly Vector512.Sum, as LinearDot takes it.
        StoreColumn<TFormat, T>(Sum4(a00, a10, a20, a30), x, xStride, w0, i, n, y, yStride);
        StoreColumn<TFormat, T>(Sum4(a01, a11, a21, a31), x, xStride, w1, i, n, y + 1, yStride);
        StoreColumn<TFormat, T>(Sum4(a02, a12, a22, a32), x, xStride, w2, i, n, y + 2, yStride);
        StoreColumn<TFormat, T>(Sum4(a03, a13, a23, a33), x, xStride, w3, i, n, y + 3, yStride);
        StoreColumn<TFormat, T>(Sum4(a04, a14, a24, a34), x, xStride, w4, i, n, y + 4, yStride);
        StoreColumn<TFormat, T>(Sum4(a05, a15, a25, a35), x, xStride, w5, i, n, y + 5, yStride);
    }

    /// <summary>
    /// y[o] = LinearDot(x, w + o · wStride, n) for one token row and 8 weight rows, bit for bit: a GEMV's eight
    /// independent chains keep the FMA latency hidden while the weights stream. <paramref name="prefetch"/>: as for
    /// <see cref="LinearTile4x6"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LinearTile1x8<TFormat, T>(float* x, T* w, long wStride, int n, float* y, bool prefetch)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        if (!LinearVectorized(n))
        {
            for (int o = 0; o < Tile1Outputs; o++)
            {
                y[o] = LinearDot<TFormat, T>(x, w + o * wStride, n);
            }

            return;
        }

        T* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        T* w4 = w + 4 * wStride, w5 = w + 5 * wStride, w6 = w + 6 * wStride, w7 = w + 7 * wStride;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int i = 0;
        for (; i <= n - 16; i += 16)
        {
            if (prefetch && (i & 63) == 0)
            {
                T* next = w0 + Ahead(i, n, Tile1Outputs * wStride);
                PrefetchLines(next, 64);
                PrefetchLines(next + wStride, 64);
                PrefetchLines(next + 2 * wStride, 64);
                PrefetchLines(next + 3 * wStride, 64);
                PrefetchLines(next + 4 * wStride, 64);
                PrefetchLines(next + 5 * wStride, 64);
                PrefetchLines(next + 6 * wStride, 64);
                PrefetchLines(next + 7 * wStride, 64);
            }

            var v = Vector512.Load(x + i);
            a0 = Vector512.FusedMultiplyAdd(v, TFormat.Load512(w0 + i), a0);
            a1 = Vector512.FusedMultiplyAdd(v, TFormat.Load512(w1 + i), a1);
            a2 = Vector512.FusedMultiplyAdd(v, TFormat.Load512(w2 + i), a2);
            a3 = Vector512.FusedMultiplyAdd(v, TFormat.Load512(w3 + i), a3);
            a4 = Vector512.FusedMultiplyAdd(v, TFormat.Load512(w4 + i), a4);
            a5 = Vector512.FusedMultiplyAdd(v, TFormat.Load512(w5 + i), a5);
            a6 = Vector512.FusedMultiplyAdd(v, TFormat.Load512(w6 + i), a6);
            a7 = Vector512.FusedMultiplyAdd(v, TFormat.Load512(w7 + i), a7);
        }

        var low = Sum4(a0, a1, a2, a3);
        var high = Sum4(a4, a5, a6, a7);
        y[0] = Tail<TFormat, T>(x, w0, i, n, low.GetElement(0));
        y[1] = Tail<TFormat, T>(x, w1, i, n, low.GetElement(1));
        y[2] = Tail<TFormat, T>(x, w2, i, n, low.GetElement(2));
        y[3] = Tail<TFormat, T>(x, w3, i, n, low.GetElement(3));
        y[4] = Tail<TFormat, T>(x, w4, i, n, high.GetElement(0));
        y[5] = Tail<TFormat, T>(x, w5, i, n, high.GetElement(1));
        y[6] = Tail<TFormat, T>(x, w6, i, n, high.GetElement(2));
        y[7] = Tail<TFormat, T>(x, w7, i, n, high.GetElement(3));
    }

    /// <summary>Where the tiles take their Vector512 path; LinearDot takes it exactly there too, or they would round differently.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool LinearVectorized(int n) => Vector512.IsHardwareAccelerated && Avx512F.IsSupported && n >= 16;

    /// <summary>
    /// How far along its weight rows a tile prefetches on its streaming sweep. A tile reads its rows side by side, so
    /// 256 weights along each is 3-6 KiB ahead in the order lines are used: far enough to cover the memory latency,
    /// near enough to stay in L1. Prefetching the next tile's rows at the same offset instead (up to 72 KiB ahead on
    /// 3072-wide rows) was about 15% slower on four-row f32 matmuls.
    /// </summary>
    private const int PrefetchElements = 256;

    /// <summary>
    /// The offset, from a tile's first weight row, of the run PrefetchElements past element i of each row: past a row's
    /// end it continues in the next tile's rows, which lie <paramref name="nextTile"/> elements on.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Ahead(int i, int n, long nextTile) =>
        i + PrefetchElements < n ? i + PrefetchElements : nextTile + i + PrefetchElements - n;

    /// <summary>Finishes one output of four token rows from their lane sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreColumn<TFormat, T>(Vector128<float> sums, float* x, long xStride, T* w, int i, int n, float* y, long yStride)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        y[0] = Tail<TFormat, T>(x, w, i, n, sums.GetElement(0));
        y[yStride] = Tail<TFormat, T>(x + xStride, w, i, n, sums.GetElement(1));
        y[2 * yStride] = Tail<TFormat, T>(x + 2 * xStride, w, i, n, sums.GetElement(2));
        y[3 * yStride] = Tail<TFormat, T>(x + 3 * xStride, w, i, n, sums.GetElement(3));
    }
}
