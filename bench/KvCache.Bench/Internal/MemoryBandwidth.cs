using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KvCache.GpuWorker.Internal;

namespace KvCache.Bench.Internal;

/// <summary>
/// The machine's memory read ceiling: a Vector512 sum over a buffer far larger than the caches, split across
/// threads, best of several runs. Eight independent accumulators keep enough loads in flight; a single
/// accumulator chain is latency-bound and understates the bandwidth.
/// </summary>
internal sealed unsafe class MemoryBandwidth : IDisposable
{
    private static float s_sink;

    private readonly float* _buffer;
    private readonly long _floats;

    /// <summary>Allocates and touches the buffer once, so that each measurement is cheap enough to repeat.</summary>
    public MemoryBandwidth(long bytes, int maxThreads)
    {
        _floats = bytes / sizeof(float) / (maxThreads * 128L) * (maxThreads * 128L);
        // The same pages as the engine's weights and caches: with 4 KiB pages the ceiling would understate the machine.
        _buffer = (float*)LargePages.Allocate((nuint)(_floats * sizeof(float)));
        for (long i = 0; i < _floats; i += 1 << 20)
        {
            new Span<float>(_buffer + i, (int)Math.Min(1 << 20, _floats - i)).Fill(1f); // first touch before timing
        }
    }

    public long Bytes => _floats * sizeof(float);

    /// <summary>
    /// Best read bandwidth in GB/s (10^9 bytes per second) over <paramref name="runs"/> passes over the first
    /// <paramref name="bytes"/> of the buffer (all of it by default).
    /// </summary>
    public double MeasureReadGBps(int threads, int runs, long bytes = long.MaxValue)
    {
        long floats = Math.Min(_floats, bytes / sizeof(float)) / (threads * 128L) * (threads * 128L);
        double best = 0;
        for (int run = 0; run < runs; run++)
        {
            best = Math.Max(best, floats * sizeof(float) / OneRun(_buffer, floats, threads) / 1e9);
        }

        return best;
    }

    public void Dispose() => NativeMemory.AlignedFree(_buffer);

    private static double OneRun(float* buffer, long floats, int threads)
    {
        using var barrier = new Barrier(threads);
        long slice = floats / threads;
        long start = 0, end = 0;
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int index = t;
            workers[t] = new Thread(() =>
            {
                barrier.SignalAndWait();
                if (index == 0)
                {
                    start = Stopwatch.GetTimestamp();
                }

                float sum = Sum(buffer + index * slice, slice);
                barrier.SignalAndWait();
                if (index == 0)
                {
                    end = Stopwatch.GetTimestamp();
                }

                s_sink += sum;
            });
            workers[t].Start();
        }

        foreach (var w in workers)
        {
            w.Join();
        }

        return Stopwatch.GetElapsedTime(start, end).TotalSeconds;
    }

    private static float Sum(float* p, long n)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> a4 = default, a5 = default, a6 = default, a7 = default;
        for (long i = 0; i < n; i += 128)
        {
            a0 += Vector512.LoadAligned(p + i);
            a1 += Vector512.LoadAligned(p + i + 16);
            a2 += Vector512.LoadAligned(p + i + 32);
            a3 += Vector512.LoadAligned(p + i + 48);
            a4 += Vector512.LoadAligned(p + i + 64);
            a5 += Vector512.LoadAligned(p + i + 80);
            a6 += Vector512.LoadAligned(p + i + 96);
            a7 += Vector512.LoadAligned(p + i + 112);
        }

        return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)));
    }
}
