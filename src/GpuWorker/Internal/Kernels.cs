using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

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
    public static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float s;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (; i <= n - 64; i += 64)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), acc1);
                acc2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 32), Vector512.Load(b + i + 32), acc2);
                acc3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 48), Vector512.Load(b + i + 48), acc3);
            }

            for (; i <= n - 16; i += 16)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc0);
            }

            s = Vector512.Sum((acc0 + acc1) + (acc2 + acc3));
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (; i <= n - 32; i += 32)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), acc1);
                acc2 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 16), Vector256.Load(b + i + 16), acc2);
                acc3 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 24), Vector256.Load(b + i + 24), acc3);
            }

            for (; i <= n - 8; i += 8)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
            }

            s = Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
        }
        else
        {
            s = 0;
        }

        for (; i < n; i++)
        {
            s = MathF.FusedMultiplyAdd(a[i], b[i], s);
        }

        return s;
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
