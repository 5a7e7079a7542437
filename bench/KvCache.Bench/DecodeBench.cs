using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KvCache.Bench.Internal;
using KvCache.GpuWorker;
using KvCache.GpuWorker.Sampling;

namespace KvCache.Bench;

/// <summary>
/// Greedy decode on DESIGN.md's benchmark model at several contexts, against the memory read ceiling measured
/// in the same run. Decode is memory-bound: every step reads all weights once plus the whole KV cache.
/// </summary>
public static class DecodeBench
{
    private const int WarmupSteps = 2;

    public static Task<int> RunAsync(string[] args)
    {
        int[] contexts = [1024, 4096, 8192];
        int steps = 32;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--contexts" when i + 1 < args.Length:
                    contexts = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
                    break;
                case "--steps" when i + 1 < args.Length:
                    steps = int.Parse(args[++i]);
                    break;
                default:
                    Console.Error.WriteLine("usage: decode [--contexts 1024,4096,8192] [--steps N]");
                    return Task.FromResult(2);
            }
        }

        var config = ModelConfig.Benchmark;
        int threads = Environment.ProcessorCount;
        Console.WriteLine($"decode bench: {threads} threads, Vector512 accelerated: {Vector512.IsHardwareAccelerated}");

        var sw = Stopwatch.StartNew();
        double ceiling = MemoryBandwidth.MeasureReadGBps(1L << 30, threads, runs: 5);
        double ceilingOne = MemoryBandwidth.MeasureReadGBps(1L << 30, 1, runs: 3);
        Console.WriteLine($"memory read ceiling (Vector512 sum over 1 GiB, 8 accumulators, best of 5): {ceiling:F1} GB/s on {threads} threads, {ceilingOne:F1} GB/s on 1 ({sw.Elapsed.TotalSeconds:F1} s)");

        var dir = Directory.CreateTempSubdirectory("kvcache-decode-bench-");
        try
        {
            sw.Restart();
            ModelGenerator.Write(dir.FullName, config, seed: 1);
            Console.WriteLine($"generated benchmark model ({config.ParameterCount / 1e6:F1}M parameters, f32) in {sw.Elapsed.TotalSeconds:F1} s");

            const int blockTokens = 256;
            int maxTokens = contexts.Max() + WarmupSteps + steps;
            long bytesPerToken = FullKvCache.BytesPerTokenFor(config);
            var options = new ModelLoadOptions
            {
                CacheBudgetBytes = (maxTokens + blockTokens - 1) / blockTokens * (long)blockTokens * bytesPerToken,
                BlockTokens = blockTokens,
                ComputeThreads = threads,
            };
            sw.Restart();
            using var model = LlamaModel.Load(dir.FullName, options);
            Console.WriteLine($"loaded in {sw.Elapsed.TotalSeconds:F1} s: cache pool {model.CacheBytesTotal / (1 << 20)} MiB, {bytesPerToken} bytes/token");

            // Weights read per step: everything except the embedding table, of which one row is read (unless tied).
            long weightBytes = (config.ParameterCount - (config.TieWordEmbeddings ? 0 : (long)config.VocabSize * config.HiddenSize)
                + config.HiddenSize) * sizeof(float);
            Console.WriteLine("cache filled by BeginRestore/WriteState with generated values (no prefill); timed steps are real greedy decode");
            Console.WriteLine();
            Console.WriteLine($"{"context",8} {"tok/s",8} {"ms/step",8} {"MB/step",9} {"GB/s",7} {"of ceiling",10} {"alloc B/step",12}");
            foreach (int context in contexts)
            {
                RunContext(model, context, steps, weightBytes, bytesPerToken, ceiling);
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }

        return Task.FromResult(0);
    }

    private static void RunContext(LlamaModel model, int context, int steps, long weightBytes, long bytesPerToken, double ceiling)
    {
        using var cache = model.CreateCache(FullKvCache.CodecId);
        Fill(cache, context);
        var logits = new float[model.Config.VocabSize];
        var scratch = new float[TokenSampler.ScratchLength(logits.Length)];
        int[] token = [1];
        var greedy = new SamplingOptions(0, 0, 0, 0);
        for (int i = 0; i < WarmupSteps; i++)
        {
            model.Forward(cache, token, logits);
            token[0] = TokenSampler.Sample(logits, greedy, cache.Position, scratch).TokenId;
        }

        long firstPosition = cache.Position;
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < steps; i++)
        {
            model.Forward(cache, token, logits);
            token[0] = TokenSampler.Sample(logits, greedy, cache.Position, scratch).TokenId;
        }

        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;

        // Step i attends over positions [0, firstPosition + i], i.e. firstPosition + i + 1 cached tokens.
        double cacheBytes = (firstPosition + 1 + (steps - 1) / 2.0) * bytesPerToken;
        double bytesPerStep = weightBytes + cacheBytes;
        double perStep = seconds / steps;
        double gbps = bytesPerStep / perStep / 1e9;
        Console.WriteLine(
            $"{context,8} {1 / perStep,8:F1} {perStep * 1e3,8:F2} {bytesPerStep / 1e6,9:F1} {gbps,7:F1} {gbps / ceiling,10:P0} {(double)allocated / steps,12:F0}");
    }

    /// <summary>Writes <paramref name="context"/> tokens of generated K/V (uniform in [-1, 1)) in 1 MiB chunks.</summary>
    private static void Fill(IKvCache cache, int context)
    {
        cache.BeginRestore(context);
        var chunk = new float[1 << 18];
        ulong state = 0x9E3779B97F4A7C15UL;
        for (long offset = 0; offset < cache.StateLength;)
        {
            int bytes = (int)Math.Min(chunk.Length * sizeof(float), cache.StateLength - offset);
            for (int i = 0; i < bytes / sizeof(float); i++)
            {
                state = state * 6364136223846793005UL + 1442695040888963407UL;
                chunk[i] = (int)(state >> 40) * (1f / (1 << 23)) - 1f;
            }

            cache.WriteState(offset, MemoryMarshal.AsBytes(chunk.AsSpan()).Slice(0, bytes));
            offset += bytes;
        }
    }
}
