using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KvCache.Bench.Internal;
using KvCache.GpuWorker;
using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.Bench;

/// <summary>
/// The engine's matmul on the benchmark model's shapes, 1 to 64 token rows, f32 and bf16 weights: GFLOP/s against
/// this machine's fused multiply-add peak and weight GB/s against its memory read ceiling, both measured in the
/// same run. A decode pass of one session is a GEMV (memory-bound); sixteen or more sessions make it a GEMM whose
/// speed the FMA peak bounds. Then decode attention over full caches of the same model, f32 and bf16, every layer in
/// turn as a pass runs it: cache GB/s against the read ceiling.
/// </summary>
public static unsafe class KernelBench
{
    private const string Usage = "usage: kernels [--ops matmul,attention] [--rows 1,4,16,64] [--contexts 1024,8192 (attention; multiples of 32)] [--seconds 0.5] [--cached (one matrix or layer, called again and again: arithmetic only)]";

    // (in, out) of the benchmark model's linear layers: attention projections, MLP up/gate, MLP down, LM head.
    private static readonly (string Name, int In, int Out)[] s_shapes =
        [("q/k/v/o 768x768", 768, 768), ("gate/up 768x3072", 768, 3072), ("down 3072x768", 3072, 768), ("lm head 768x32000", 768, 32000)];

    private const long ArenaBytes = 1L << 30;

    private static float s_sink;

    public static int Run(string[] args)
    {
        int[] rows = [1, 4, 16, 64];
        double seconds = 0.5;
        bool cached = false;
        string[] ops = ["matmul", "attention"];
        int[] contexts = [1024, 8192];
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                switch (args[i])
                {
                    case "--rows" when i + 1 < args.Length: rows = [.. args[++i].Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture))]; break;
                    case "--seconds" when i + 1 < args.Length: seconds = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
                    case "--cached": cached = true; break;
                    case "--ops" when i + 1 < args.Length: ops = args[++i].Split(','); break;
                    case "--contexts" when i + 1 < args.Length: contexts = [.. args[++i].Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture))]; break;
                    default: rows = []; break;
                }
            }
        }
        catch (FormatException)
        {
            rows = [];
        }

        if (rows.Length == 0 || rows.Any(r => r is < 1 or > 64) || seconds <= 0 || ops.Any(o => o is not ("matmul" or "attention"))
            || contexts.Any(c => c < AttentionBlockTokens || c % AttentionBlockTokens != 0))
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }

        int threads = Environment.ProcessorCount;
        using var bandwidth = new MemoryBandwidth(1L << 30, threads);
        double ceiling = bandwidth.MeasureReadGBps(threads, 5);
        double peak = FmaPeakGflops(threads);
        Console.WriteLine($"memory read ceiling {ceiling:F1} GB/s, FMA peak {peak:F0} GFLOP/s ({threads} threads)");
        if (ops.Contains("matmul"))
        {
            MatMuls(threads, rows, cached, seconds, ceiling, peak);
        }

        if (ops.Contains("attention"))
        {
            Attention(threads, rows, contexts, cached, seconds, ceiling);
        }

        return 0;
    }

    private static void MatMuls(int threads, int[] rows, bool cached, double seconds, double ceiling, double peak)
    {
        Console.WriteLine($"{"shape",-20} {"weights",-5} {"rows",5} {"µs",9} {"GFLOP/s",8} {"of peak",8} {"weight GB/s",12} {"of ceiling",10}");

        int maxRows = rows.Max();
        using var backend = new CpuBackend(threads, 1024);

        // Each call reads the next matrix of a 1 GiB arena, as a pass reads each layer's weights from memory once:
        // calling one small matrix again and again would time the caches instead.
        byte* arena = (byte*)LargePages.Allocate((nuint)ArenaBytes);
        int maxIn = s_shapes.Max(t => t.In), maxOut = s_shapes.Max(t => t.Out);
        float* x = (float*)NativeMemory.AlignedAlloc((nuint)((long)maxRows * maxIn * sizeof(float)), 64);
        float* y = (float*)NativeMemory.AlignedAlloc((nuint)((long)maxRows * maxOut * sizeof(float)), 64);
        try
        {
            // 0x3F80 halves: 1.0 as bf16, about 1.0039 as f32; finite either way.
            new Span<uint>(arena, (int)(ArenaBytes / sizeof(uint))).Fill(0x3F803F80u);
            var random = new Random(7);
            for (long i = 0; i < (long)maxRows * maxIn; i++)
            {
                x[i] = (float)(random.NextDouble() - 0.5);
            }

            foreach (var (name, inDim, outDim) in s_shapes)
            {
                foreach (bool bf16 in (bool[])[false, true])
                {
                    long weightBytes = (long)inDim * outDim * (bf16 ? sizeof(ushort) : sizeof(float));
                    foreach (int r in rows)
                    {
                        double us = Time(backend, x, r, inDim, arena, cached ? 1 : ArenaBytes / Stride(weightBytes), weightBytes, bf16, outDim, y, seconds) * 1e6;
                        double gflops = 2.0 * r * inDim * outDim / us / 1e3;
                        double gbps = weightBytes / us / 1e3;
                        Console.WriteLine($"{name,-20} {(bf16 ? "bf16" : "f32"),-5} {r,5} {us,9:F1} {gflops,8:F1} {gflops / peak,8:P0} {gbps,12:F1} {gbps / ceiling,10:P0}");
                    }
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(arena);
            NativeMemory.AlignedFree(x);
            NativeMemory.AlignedFree(y);
        }
    }

    private static void Attention(int threads, int[] rows, int[] contexts, bool cached, double seconds, double ceiling)
    {
        Console.WriteLine($"{"attention",-20} {"context",7} {"rows",5} {"µs/layer",9} {"cache GB/s",11} {"of ceiling",10}");
        foreach (int context in contexts)
        {
            foreach (var format in (KvCacheFormat[])[KvCacheFormat.F32, KvCacheFormat.Bf16])
            {
                long tokenBytes = AttentionTokenElements * KvLayout.ElementBytesOf(format);
                foreach (int r in rows.Where(r => (long)r * context * tokenBytes <= AttentionCacheLimit))
                {
                    double us = TimeAttention(threads, context, r, format, cached, seconds) * 1e6;
                    double gbps = (double)r * context * tokenBytes / AttentionLayers / us / 1e3;
                    Console.WriteLine($"{$"full {format} 12x64",-20} {context,7} {r,5} {us,9:F1} {gbps,11:F1} {gbps / ceiling,10:P0}");
                }
            }
        }
    }

    // The benchmark model's attention: 12 layers of 12 heads (plain multi-head) of 64 dims, 32-token blocks.
    private const int AttentionLayers = 12, AttentionHeads = 12, AttentionHeadDim = 64, AttentionBlockTokens = 32;
    private const long AttentionTokenElements = AttentionLayers * 2L * AttentionHeads * AttentionHeadDim;
    private const long AttentionCacheLimit = 3L << 29;

    /// <summary>
    /// Median seconds per layer of one decode row per session attending over its own context-long cache, the layers
    /// taken in turn (with <paramref name="cached"/>, layer 0 again and again). Each session's blocks are consecutive
    /// in one pool, as a fresh pool hands them out.
    /// </summary>
    private static double TimeAttention(int threads, int context, int sessions, KvCacheFormat format, bool cached, double seconds)
    {
        int blocks = context / AttentionBlockTokens;
        int elementBytes = KvLayout.ElementBytesOf(format);
        long blockBytes = AttentionTokenElements * AttentionBlockTokens * elementBytes;
        long poolBytes = (long)sessions * blocks * blockBytes;
        byte* pool = (byte*)LargePages.Allocate((nuint)poolBytes);
        int* table = (int*)NativeMemory.Alloc((nuint)((long)sessions * blocks * sizeof(int)));
        int width = AttentionHeads * AttentionHeadDim;
        float* q = (float*)NativeMemory.AlignedAlloc((nuint)((long)sessions * width * sizeof(float)), 64);
        float* output = (float*)NativeMemory.AlignedAlloc((nuint)((long)sessions * width * sizeof(float)), 64);
        try
        {
            var values = CacheValues.Bf16Pairs(8192);
            long halves = poolBytes / sizeof(ushort);
            for (long i = 0; i < halves; i += values.Length)
            {
                int count = (int)Math.Min(values.Length, halves - i);
                values.AsSpan(0, count).CopyTo(new Span<ushort>((ushort*)pool + i, count));
            }

            var random = new Random(11);
            for (long i = 0; i < (long)sessions * width; i++)
            {
                q[i] = (float)(random.NextDouble() - 0.5);
            }

            var attentionRows = new AttentionRows(sessions);
            for (int s = 0; s < sessions; s++)
            {
                for (int b = 0; b < blocks; b++)
                {
                    table[s * blocks + b] = s * blocks + b;
                }

                attentionRows.Add(s, new KvView(pool, table + s * blocks, AttentionBlockTokens, blockBytes, AttentionHeads, AttentionHeadDim, elementBytes), context - 1);
            }

            using var backend = new CpuBackend(threads, context);
            float scale = 1f / MathF.Sqrt(AttentionHeadDim);
            return MedianSeconds(
                call => backend.Attention(attentionRows, cached ? 0 : (int)(call % AttentionLayers), q, AttentionHeads, scale, output),
                untimed: AttentionLayers,
                seconds);
        }
        finally
        {
            NativeMemory.AlignedFree(pool);
            NativeMemory.Free(table);
            NativeMemory.AlignedFree(q);
            NativeMemory.AlignedFree(output);
        }
    }

    /// <summary>Median seconds per call of a matrix of the arena, the matrices taken in turn (one slot: the same one again and again).</summary>
    private static double Time(CpuBackend backend, float* x, int rows, int inDim, byte* arena, long slots, long weightBytes, bool bf16, int outDim, float* y, double seconds)
    {
        long stride = Stride(weightBytes);
        return MedianSeconds(call => backend.MatMul(x, rows, inDim, new LinearWeight(arena + call % slots * stride, bf16), outDim, y), untimed: 3, seconds);
    }

    /// <summary>
    /// Median seconds of <paramref name="call"/>(0, 1, …) over about <paramref name="seconds"/> of calls and at least five
    /// timed ones, after <paramref name="untimed"/> warm-up calls.
    /// </summary>
    private static double MedianSeconds(Action<long> call, int untimed, double seconds)
    {
        var samples = new List<double>();
        var total = Stopwatch.StartNew();
        for (long i = 0; total.Elapsed.TotalSeconds < seconds || samples.Count < 5; i++)
        {
            long start = Stopwatch.GetTimestamp();
            call(i);
            if (i >= untimed)
            {
                samples.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
        }

        samples.Sort();
        return samples[samples.Count / 2];
    }

    private static long Stride(long weightBytes) => (weightBytes + 4095) & ~4095L;

    /// <summary>Register-only Vector512 FMAs, 12 independent chains per thread so latency never limits them.</summary>
    private static double FmaPeakGflops(int threads)
    {
        const long Iterations = 50_000_000;
        double best = 0;
        for (int run = 0; run < 3; run++)
        {
            using var barrier = new Barrier(threads + 1);
            var workers = new Thread[threads];
            for (int t = 0; t < threads; t++)
            {
                workers[t] = new Thread(() =>
                {
                    barrier.SignalAndWait();
                    s_sink += FmaChains(Iterations);
                });
                workers[t].Start();
            }

            barrier.SignalAndWait();
            long start = Stopwatch.GetTimestamp();
            foreach (var worker in workers)
            {
                worker.Join();
            }

            double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Max(best, threads * Iterations * 12.0 * 16 * 2 / s / 1e9);
        }

        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float FmaChains(long iterations)
    {
        var m = Vector512.Create(0.999999f);
        var b = Vector512.Create(1e-7f);
        Vector512<float> a0 = Vector512<float>.One, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        Vector512<float> a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, b);
            a1 = Vector512.FusedMultiplyAdd(a1, m, b);
            a2 = Vector512.FusedMultiplyAdd(a2, m, b);
            a3 = Vector512.FusedMultiplyAdd(a3, m, b);
            a4 = Vector512.FusedMultiplyAdd(a4, m, b);
            a5 = Vector512.FusedMultiplyAdd(a5, m, b);
            a6 = Vector512.FusedMultiplyAdd(a6, m, b);
            a7 = Vector512.FusedMultiplyAdd(a7, m, b);
            a8 = Vector512.FusedMultiplyAdd(a8, m, b);
            a9 = Vector512.FusedMultiplyAdd(a9, m, b);
            a10 = Vector512.FusedMultiplyAdd(a10, m, b);
            a11 = Vector512.FusedMultiplyAdd(a11, m, b);
        }

        return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }
}
