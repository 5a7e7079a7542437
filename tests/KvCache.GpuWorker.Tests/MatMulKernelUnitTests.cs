using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.GpuWorker.Tests;

/// <summary>
/// Batch invariance of the matmul kernels: every tile and any row count give exactly LinearDot's bits, and bf16 weights give
/// exactly the bits of their f32 widening. The attention kernels give exactly the bits of Dot and Axpy, key by key.
/// </summary>
public sealed unsafe class MatMulKernelUnitTests
{
    private static readonly int[] Lengths = [1, 7, 15, 16, 17, 63, 64, 65, 100, 768, 2048 + 5];

    public static TheoryData<int, int> LengthsAndOffsets()
    {
        var data = new TheoryData<int, int>();
        foreach (int n in Lengths)
        {
            foreach (int offset in (int[])[0, 1, 5])
            {
                data.Add(n, offset);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(LengthsAndOffsets))]
    public void Linear_tiles_equal_LinearDot_bit_for_bit_at_any_length_and_alignment_with_or_without_prefetch(int n, int offset)
    {
        // Token rows and weight rows sit at different odd strides past a misaligned start, so no two share an alignment.
        long stride = n + 3, wStride = n + 5;
        const int WeightRows = Kernels.Tile1Outputs;
        using var x = new Native<float>(offset + 4 * stride);
        using var w = new Native<float>(offset + WeightRows * wStride);
        using var wb = new Native<ushort>(offset + WeightRows * wStride);
        using var widened = new Native<float>(WeightRows * wStride);
        Fill(x.Span, seed: n);
        Fill(w.Span, seed: n + 1);
        Bf16.Convert(w.Span, wb.Span);
        float* xp = x.Pointer + offset, wp = w.Pointer + offset;
        ushort* wbp = wb.Pointer + offset;
        Widen(wbp, widened.Pointer, WeightRows * wStride);

        const int Outputs = Kernels.Tile4Outputs;
        float* tile = stackalloc float[4 * Outputs];
        float* tileBf16 = stackalloc float[4 * Outputs];
        float* row = stackalloc float[WeightRows];
        float* rowBf16 = stackalloc float[WeightRows];
        foreach (bool prefetch in (bool[])[false, true])
        {
            Kernels.LinearTile4x6<F32Weights, float>(xp, stride, wp, wStride, n, tile, Outputs, prefetch);
            Kernels.LinearTile4x6<Bf16Weights, ushort>(xp, stride, wbp, wStride, n, tileBf16, Outputs, prefetch);
            for (int r = 0; r < 4; r++)
            {
                float* xr = xp + r * stride;
                Kernels.LinearTile1x8<F32Weights, float>(xr, wp, wStride, n, row, prefetch);
                Kernels.LinearTile1x8<Bf16Weights, ushort>(xr, wbp, wStride, n, rowBf16, prefetch);
                for (int o = 0; o < WeightRows; o++)
                {
                    float expected = Kernels.LinearDot<F32Weights, float>(xr, wp + o * wStride, n);
                    float expectedBf16 = Kernels.LinearDot<F32Weights, float>(xr, widened.Pointer + o * wStride, n);
                    AssertClose(xr, wp + o * wStride, n, expected);
                    AssertBits(expected, row[o]);
                    AssertBits(expectedBf16, rowBf16[o]);
                    AssertBits(expectedBf16, Kernels.LinearDot<Bf16Weights, ushort>(xr, wbp + o * wStride, n));
                    if (o < Outputs)
                    {
                        AssertBits(expected, tile[r * Outputs + o]);
                        AssertBits(expectedBf16, tileBf16[r * Outputs + o]);
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(768, 40)]
    [InlineData(65, 33)]
    [InlineData(7, 5)]
    public void MatMul_gives_each_row_the_bits_it_gets_alone(int inDim, int outDim)
    {
        const int MaxRows = 64;
        using var backend = new CpuBackend(threads: 2, maxPositions: 64);
        using var x = new Native<float>(3 + (long)MaxRows * inDim);
        using var w = new Native<float>((long)outDim * inDim);
        using var y = new Native<float>((long)MaxRows * outDim);
        using var alone = new Native<float>(outDim);
        Fill(x.Span, seed: 1);
        Fill(w.Span, seed: 2);
        float* xp = x.Pointer + 3;
        foreach (int rows in (int[])[1, 2, 3, 4, 5, 6, 7, 8, 9, MaxRows])
        {
            backend.MatMul(xp, rows, inDim, w.Pointer, outDim, y.Pointer);
            for (int r = 0; r < rows; r++)
            {
                float* xr = xp + (long)r * inDim;
                backend.MatMul(xr, 1, inDim, w.Pointer, outDim, alone.Pointer);
                for (int o = 0; o < outDim; o++)
                {
                    AssertBits(alone.Pointer[o], y.Pointer[(long)r * outDim + o]);
                    AssertBits(Kernels.LinearDot<F32Weights, float>(xr, w.Pointer + (long)o * inDim, inDim), alone.Pointer[o]);
                }
            }
        }
    }

    [Theory]
    [InlineData(768, 40)]
    [InlineData(65, 33)]
    [InlineData(7, 5)]
    public void MatMulBf16_equals_MatMul_over_the_widened_weights(int inDim, int outDim)
    {
        const int MaxRows = 64;
        using var backend = new CpuBackend(threads: 2, maxPositions: 64);
        long count = (long)outDim * inDim;
        using var x = new Native<float>((long)MaxRows * inDim);
        using var w = new Native<float>(count);
        using var wb = new Native<ushort>(count);
        using var expected = new Native<float>((long)MaxRows * outDim);
        using var actual = new Native<float>((long)MaxRows * outDim);
        Fill(x.Span, seed: 3);
        Fill(w.Span, seed: 4);
        Bf16.Convert(w.Span, wb.Span);
        Widen(wb.Pointer, w.Pointer, count);
        foreach (int rows in (int[])[1, 3, 4, 5, MaxRows])
        {
            backend.MatMul(x.Pointer, rows, inDim, w.Pointer, outDim, expected.Pointer);
            backend.MatMulBf16(x.Pointer, rows, inDim, wb.Pointer, outDim, actual.Pointer);
            for (long i = 0; i < (long)rows * outDim; i++)
            {
                AssertBits(expected.Pointer[i], actual.Pointer[i]);
            }
        }
    }

    [Theory]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(80)]
    [InlineData(16)]
    [InlineData(24)]
    [InlineData(7)]
    public void Scores_and_AccumulateValues_equal_Dot_and_Axpy_key_by_key(int hd)
    {
        const int MaxKeys = 40;
        using var q = new Native<float>(hd);
        using var keys = new Native<float>((long)MaxKeys * hd);
        using var values = new Native<float>((long)MaxKeys * hd);
        using var scores = new Native<float>(MaxKeys + 16);
        using var expected = new Native<float>(hd);
        using var actual = new Native<float>(hd);
        Fill(q.Span, seed: hd);
        Fill(keys.Span, seed: hd + 1);
        Fill(values.Span, seed: hd + 2);
        keys.Pointer[3 * hd + 1] = float.NaN; // a NaN key poisons its own score and no other
        const float Scale = 0.125f;
        foreach (int m in (int[])[1, 5, 15, 16, 17, 31, 32, MaxKeys])
        {
            scores.Span.Fill(-7f);
            // Prefetching a next slab (any readable memory) must not change a bit.
            Kernels.Scores(q.Pointer, keys.Pointer, m, hd, Scale, scores.Pointer, next: m % 2 == 0 ? values.Pointer : null);
            for (int t = 0; t < m; t++)
            {
                AssertBits(Kernels.Dot(q.Pointer, keys.Pointer + (long)t * hd, hd) * Scale, scores.Pointer[t]);
            }

            Assert.Equal(m > 3, float.IsNaN(scores.Pointer[3]));
            scores.Pointer[3] = 0.5f;
            Fill(expected.Span, seed: m);
            expected.Span.CopyTo(actual.Span);
            for (int t = 0; t < m; t++)
            {
                Kernels.Axpy(scores.Pointer[t], values.Pointer + (long)t * hd, expected.Pointer, hd);
            }

            Kernels.AccumulateValues(scores.Pointer, values.Pointer, m, hd, actual.Pointer, next: m % 2 == 0 ? keys.Pointer : null);
            for (int e = 0; e < hd; e++)
            {
                AssertBits(expected.Pointer[e], actual.Pointer[e]);
            }
        }
    }

    [Theory]
    [InlineData(0x3F800000u, 0x3F80)] // exact
    [InlineData(0x3F807FFFu, 0x3F80)] // below half: down
    [InlineData(0x3F808001u, 0x3F81)] // above half: up
    [InlineData(0x3F808000u, 0x3F80)] // tie, even below: down
    [InlineData(0x3F818000u, 0x3F82)] // tie, odd below: up to even
    [InlineData(0xBF818000u, 0xBF82)] // sign is kept
    [InlineData(0x3FFF8000u, 0x4000)] // mantissa carries into the exponent
    [InlineData(0x7F7FFFFFu, 0x7F80)] // float.MaxValue rounds to infinity
    [InlineData(0x7F800000u, 0x7F80)] // +infinity
    [InlineData(0xFF800000u, 0xFF80)] // -infinity
    [InlineData(0x80000000u, 0x8000)] // -0
    [InlineData(0x00008000u, 0x0000)] // subnormal tie to even
    [InlineData(0x00018000u, 0x0002)] // subnormal tie to even, up
    [InlineData(0x7FC00000u, 0x7FC0)] // quiet NaN
    [InlineData(0xFFC12345u, 0xFFC1)] // NaN: sign and high payload kept, never rounded into the next value
    [InlineData(0x7F800001u, 0x7FC0)] // NaN whose payload lies only in the dropped bits stays NaN
    public void Bf16_FromSingle_rounds_to_nearest_even(uint bits, int expected)
    {
        ushort b = Bf16.FromSingle(BitConverter.UInt32BitsToSingle(bits));
        Assert.Equal((ushort)expected, b);
        Assert.Equal(float.IsNaN(BitConverter.UInt32BitsToSingle(bits)), float.IsNaN(Bf16.ToSingle(b)));
    }

    [Fact]
    public void Bf16_round_trips_every_value_and_Convert_matches_FromSingle()
    {
        var values = new float[65536];
        for (int b = 0; b < values.Length; b++)
        {
            float f = Bf16.ToSingle((ushort)b);
            Assert.Equal((uint)b << 16, BitConverter.SingleToUInt32Bits(f));
            values[b] = f;
            if (!float.IsNaN(f))
            {
                Assert.Equal((ushort)b, Bf16.FromSingle(f));
            }
        }

        var random = new Random(5);
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = BitConverter.UInt32BitsToSingle((uint)random.NextInt64(1L << 32));
        }

        var converted = new ushort[values.Length];
        Bf16.Convert(values, converted);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(Bf16.FromSingle(values[i]), converted[i]);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => Bf16.Convert(values, new ushort[10]));
    }

    [Theory]
    [InlineData(64)]
    [InlineData(96)]
    [InlineData(32)]
    [InlineData(80)]
    [InlineData(24)]
    public void Scores_and_AccumulateValues_over_bf16_keys_and_values_equal_them_over_the_widened_f32(int hd)
    {
        const int MaxKeys = 40;
        long count = (long)MaxKeys * hd;
        using var q = new Native<float>(hd);
        using var keys = new Native<float>(count);
        using var values = new Native<float>(count);
        using var keysBf16 = new Native<ushort>(count);
        using var valuesBf16 = new Native<ushort>(count);
        using var expected = new Native<float>(MaxKeys + 16);
        using var actual = new Native<float>(MaxKeys + 16);
        using var expectedOut = new Native<float>(hd);
        using var actualOut = new Native<float>(hd);
        Fill(q.Span, seed: hd);
        Fill(keys.Span, seed: hd + 1);
        Fill(values.Span, seed: hd + 2);
        Bf16.Convert(keys.Span, keysBf16.Span);
        Bf16.Convert(values.Span, valuesBf16.Span);
        Widen(keysBf16.Pointer, keys.Pointer, count);
        Widen(valuesBf16.Pointer, values.Pointer, count);
        foreach (int m in (int[])[1, 15, 16, 17, MaxKeys])
        {
            Kernels.Scores(q.Pointer, keys.Pointer, m, hd, 0.125f, expected.Pointer, null);
            Kernels.Scores<Bf16Weights, ushort>(q.Pointer, keysBf16.Pointer, m, hd, 0.125f, actual.Pointer, m % 2 == 0 ? valuesBf16.Pointer : null);
            for (int t = 0; t < m; t++)
            {
                AssertBits(expected.Pointer[t], actual.Pointer[t]);
            }

            Fill(expectedOut.Span, seed: m);
            expectedOut.Span.CopyTo(actualOut.Span);
            Kernels.AccumulateValues(expected.Pointer, values.Pointer, m, hd, expectedOut.Pointer, null);
            Kernels.AccumulateValues<Bf16Weights, ushort>(expected.Pointer, valuesBf16.Pointer, m, hd, actualOut.Pointer, m % 2 == 0 ? keysBf16.Pointer : null);
            for (int e = 0; e < hd; e++)
            {
                AssertBits(expectedOut.Pointer[e], actualOut.Pointer[e]);
            }
        }
    }

    private static void AssertBits(float expected, float actual) =>
        Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(actual));

    /// <summary>The reduction really is x · w: within f32 rounding of the double-precision sum.</summary>
    private static void AssertClose(float* x, float* w, int n, float actual)
    {
        double exact = 0, magnitude = 0;
        for (int i = 0; i < n; i++)
        {
            exact += (double)x[i] * w[i];
            magnitude += Math.Abs((double)x[i] * w[i]);
        }

        Assert.InRange(actual, exact - 1e-6 * magnitude - 1e-30, exact + 1e-6 * magnitude + 1e-30);
    }

    private static void Fill(Span<float> values, int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)(random.NextDouble() * 2 - 1);
        }
    }

    private static void Widen(ushort* source, float* destination, long count)
    {
        for (long i = 0; i < count; i++)
        {
            destination[i] = Bf16.ToSingle(source[i]);
        }
    }

    /// <summary>64-byte aligned native memory, so offsets from it give known misalignments.</summary>
    private sealed class Native<T>(long count) : IDisposable
        where T : unmanaged
    {
        public T* Pointer { get; } = (T*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(T)), 64);

        public Span<T> Span => new(Pointer, checked((int)count));

        public void Dispose() => NativeMemory.AlignedFree(Pointer);
    }
}
