using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics;
using KvCache.Bench.Internal;
using KvCache.GpuWorker;
using KvCache.GpuWorker.Batching;

namespace KvCache.Bench;

/// <summary>
/// Greedy decode of 1 to 64 concurrent sessions of every codec on DESIGN.md's benchmark model at several contexts,
/// against the memory read ceiling measured in the same run. Decode is memory-bound: a pass reads every weight once
/// for the whole batch plus each session's cache, so batching S sessions divides the weight traffic per token by S.
/// </summary>
public static class DecodeBench
{
    private const string Usage =
        "usage: decode [--codecs full,svd-gqa,yoco,yoco-gret,fusedkv,fourier] [--contexts 1024,8192,32768] [--sessions 1,4,16,64 (at most 64)] "
        + "[--steps 8] [--memory-gib 12] [--weights f32|bf16] [--cache f32|bf16] [--block-tokens 32] [--scheduler] [--capacity-gib G] [--json PATH]";

    private const int WarmupSteps = 2;
    // A fourier cache keeps three block lists (slots, coefficients, middle tokens), each rounded up to whole blocks.
    private const int SpareBlocksPerCache = 2;

    // "yoco-gret" is the yoco codec of a YOCO model with the gated-retention self-decoder ("yoco": sliding window).
    private const string YocoGatedRetention = "yoco-gret";

    private static readonly string[] s_codecs =
        [FullKvCache.CodecId, SvdGqaKvCache.CodecId, YocoKvCache.CodecId, YocoGatedRetention, FusedKvCache.CodecId, FourierKvCache.CodecId];

    // Its caches are f32 only (a model with bf16 caches does not offer it).
    private static readonly string[] s_f32CacheCodecs = [FourierKvCache.CodecId];

    private sealed record Options(
        string[] Codecs, int[] Contexts, int[] Sessions, int Steps, double MemoryGiB, WeightFormat Weights, KvCacheFormat Cache, int BlockTokens, bool Scheduler,
        double? CapacityGiB, string? Json)
    {
        public long BudgetBytes => (long)(MemoryGiB * (1L << 30));

        /// <summary>With <c>--capacity-gib</c>: the fixed cache budget each cell fills with as many sessions as fit.</summary>
        public long? CapacityBytes => CapacityGiB is { } g ? (long)(g * (1L << 30)) : null;

        /// <summary>Tokens a cache filled to <paramref name="context"/> holds after the warmup and timed steps.</summary>
        public int FinalTokens(int context) => context + WarmupSteps + Steps;
    }

    /// <summary>One measured cell, kept for the summary and the JSON results.</summary>
    internal readonly record struct Result(
        string Codec, int Context, int Sessions, string Weights, string Cache, double TokensPerSecond, double OfCeiling, double BytesPerToken, double? CapacityGiB);

    public static async Task<int> RunAsync(string[] args)
    {
        if (Parse(args) is not { } o)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }

        int threads = Environment.ProcessorCount;
        using var bandwidth = new MemoryBandwidth(1L << 30, threads);
        MeasureCeiling(bandwidth, threads);
        int[] contexts = ClampContexts(o);
        PrintHeader(o);
        if (o.Cache != KvCacheFormat.F32 && o.Codecs.Intersect(s_f32CacheCodecs).ToArray() is { Length: > 0 } skipped)
        {
            Console.WriteLine($"{string.Join(", ", skipped)}: skipped, f32 caches only");
            o = o with { Codecs = [.. o.Codecs.Except(s_f32CacheCodecs)] };
        }

        var results = new List<Result>();
        var root = Directory.CreateTempSubdirectory("kvcache-decode-bench-");
        try
        {
            // Full and fourier caches come from the same plain model: one load serves both.
            foreach (var group in o.Codecs.GroupBy(ConfigFor))
            {
                using var model = GenerateAndLoad(Path.Combine(root.FullName, string.Join('+', group)), group.Key, [.. group], contexts, o, threads);
                foreach (string codec in group)
                {
                    await RunCodecAsync(model, codec, contexts, o, bandwidth, results);
                }
            }
        }
        finally
        {
            root.Delete(recursive: true);
        }

        if (o.CapacityGiB is null)
        {
            PrintSummary(results, o);
        }

        if (o.Json is { } json)
        {
            BenchResults.Write(json, "decode", results);
            Console.WriteLine($"results: {json}");
        }

        return 0;
    }

    private static Options? Parse(string[] args)
    {
        var o = new Options(
            s_codecs, [1024, 8192, 32768], [1, 4, 16, 64], Steps: 8, MemoryGiB: 12, WeightFormat.F32, KvCacheFormat.F32, new ModelLoadOptions().BlockTokens, Scheduler: false,
            CapacityGiB: null, Json: null);
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                bool hasValue = i + 1 < args.Length;
                switch (args[i])
                {
                    case "--codecs" when hasValue:
                        o = o with { Codecs = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries) };
                        break;
                    case "--contexts" when hasValue:
                        o = o with { Contexts = Ints(args[++i]) };
                        break;
                    case "--sessions" when hasValue:
                        o = o with { Sessions = Ints(args[++i]) };
                        break;
                    case "--steps" when hasValue:
                        o = o with { Steps = int.Parse(args[++i], CultureInfo.InvariantCulture) };
                        break;
                    case "--memory-gib" when hasValue:
                        o = o with { MemoryGiB = double.Parse(args[++i], CultureInfo.InvariantCulture) };
                        break;
                    case "--weights" when hasValue:
                        o = o with { Weights = Enum.Parse<WeightFormat>(args[++i], ignoreCase: true) };
                        break;
                    case "--cache" when hasValue:
                        o = o with { Cache = Enum.Parse<KvCacheFormat>(args[++i], ignoreCase: true) };
                        break;
                    case "--block-tokens" when hasValue:
                        o = o with { BlockTokens = int.Parse(args[++i], CultureInfo.InvariantCulture) };
                        break;
                    case "--scheduler":
                        o = o with { Scheduler = true };
                        break;
                    case "--capacity-gib" when hasValue:
                        o = o with { CapacityGiB = double.Parse(args[++i], CultureInfo.InvariantCulture) };
                        break;
                    case "--json" when hasValue:
                        o = o with { Json = args[++i] };
                        break;
                    default:
                        return null;
                }
            }
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            return null;
        }

        // A direct pass carries one token per session, and at most MaxBatchTokens (= ChunkTokens) tokens.
        bool valid = o.Codecs.Length > 0 && o.Codecs.All(s_codecs.Contains)
            && o.Contexts.Length > 0 && o.Contexts.All(c => c > 0)
            && o.Sessions.Length > 0 && o.Sessions.All(s => s is >= 1 and <= LlamaModel.ChunkTokens)
            && o.Steps > 0 && o.MemoryGiB > 0 && o.BlockTokens > 0 && o.CapacityGiB is null or > 0;
        return valid ? o : null;
    }

    private static int[] Ints(string list) =>
        [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture))];

    private static void MeasureCeiling(MemoryBandwidth bandwidth, int threads)
    {
        Console.WriteLine(
            $"decode bench: {threads} threads, Vector512 accelerated: {Vector512.IsHardwareAccelerated}, tiered compilation: "
            + (AppContext.TryGetSwitch("System.Runtime.TieredCompilation", out bool tiered) && !tiered ? "off (the steady state from the first pass)" : "on"));
        double ceiling = bandwidth.MeasureReadGBps(threads, runs: 5);
        double ceilingOne = bandwidth.MeasureReadGBps(1, runs: 3);
        Console.WriteLine(
            $"memory read ceiling (Vector512 sum over {bandwidth.Bytes >> 20} MiB, 8 accumulators): best of 5 {ceiling:F1} GB/s on {threads} threads, best of 3 {ceilingOne:F1} GB/s on 1; "
            + $"this machine's bandwidth drifts with its neighbours, so every cell probes it again right before and after its timed passes ({ProbeBytes >> 20} MiB per probe)");
    }

    // Far larger than the CPU's last-level cache, and short enough to run between two decode passes.
    private const long ProbeBytes = 256L << 20;

    /// <summary>
    /// The read ceiling now: the better of 2 threads and 1 thread (on a shared machine either may be the slowed one).
    /// It first lets the compute pool's workers stop spinning, which would otherwise compete with the probe's threads.
    /// </summary>
    private static double Probe(MemoryBandwidth bandwidth)
    {
        Thread.Sleep(20);
        return Math.Max(bandwidth.MeasureReadGBps(Environment.ProcessorCount, runs: 2, ProbeBytes), bandwidth.MeasureReadGBps(1, runs: 1, ProbeBytes));
    }

    /// <summary>
    /// The cell's timed steps between two read-ceiling probes. The neighbours' load moves the ceiling within seconds
    /// (from 36 to 78 GB/s in one session): one probe before the cell let a pass read faster than its ceiling, the
    /// mean of a probe on each side is nearer the conditions the passes ran in. Probes between the passes would
    /// perturb them: a pass that starts after a pause finds the pool's workers asleep.
    /// </summary>
    private static async Task<(DecodeTiming Timing, double[] Probes)> TimedStepsAsync(
        DecodeBatch batch, BatchScheduler? scheduler, int steps, MemoryBandwidth bandwidth)
    {
        double before = Probe(bandwidth);
        var timing = scheduler is null ? batch.RunPasses(steps) : await batch.RunScheduledAsync(scheduler, steps);
        return (timing, [before, Probe(bandwidth)]);
    }

    /// <summary>Contexts with room left for the warmup and timed steps below max positions.</summary>
    private static int[] ClampContexts(Options o)
    {
        int max = ModelConfig.Benchmark.MaxPositionEmbeddings - WarmupSteps - o.Steps;
        foreach (int context in o.Contexts.Where(c => c > max))
        {
            Console.WriteLine(
                $"context {context} clamped to {max}: max positions {ModelConfig.Benchmark.MaxPositionEmbeddings} - {WarmupSteps} warmup - {o.Steps} timed steps");
        }

        return [.. o.Contexts.Select(c => Math.Min(c, max)).Distinct()];
    }

    private static void PrintHeader(Options o)
    {
        Console.WriteLine(
            $"model: ModelConfig.Benchmark ({ModelConfig.Benchmark.ParameterCount / 1e6:F1}M parameters, {o.Weights} linear weights, {o.Cache} KV caches) or its codec variant, random weights; "
            + $"{o.BlockTokens}-token cache blocks; cells whose caches need more than {o.MemoryGiB:G} GiB are skipped");
        Console.WriteLine(
            $"each cell: S caches filled to the context by BeginRestore/WriteState with generated values (no prefill), then {WarmupSteps} warmup "
            + $"and {o.Steps} timed greedy decode steps of all S sessions, "
            + (o.Scheduler
                ? "each session a concurrent task awaiting BatchScheduler.ForwardAsync (the scheduler forms the passes)"
                : "one ForwardBatch of S items per step"));
        Console.WriteLine(
            "bytes read per pass = weights (all but the embedding table, + one embedding row per token) "
            + "+ per token CacheBytesReadAt(codec, context) (the bytes held, or more where layers share a cache: YOCO, FusedKV); MB/token = that / tokens");
        Console.WriteLine(
            (o.Scheduler
                ? "alloc B/pass: managed bytes allocated by the whole process (the bench's session tasks included) per pass; "
                : "alloc B/pass: managed bytes allocated on the bench thread per pass (must be 0); ")
            + "ceiling: mean of two read-ceiling probes, right before and right after the timed steps (each the better of 2 threads and 1), "
            + "both beside it; of ceiling: GB/s / ceiling; "
            + "resident and codec MiB per session: (CacheBytesTotal - CacheBytesFree) / S and sum of CacheBytes / S after the timed steps");
    }

    /// <summary>The model a codec runs on: the benchmark model, converted or rebuilt for the codecs that need it.</summary>
    internal static ModelConfig ConfigFor(string codec) => codec switch
    {
        FullKvCache.CodecId or FourierKvCache.CodecId => ModelConfig.Benchmark,

        // Groups of two KV heads of 64 dims kept at rank 64 (the converter's default group size at ratio 1/2): half the cache.
        SvdGqaKvCache.CodecId => ModelConfig.Benchmark with { SvdGqa = new SvdGqaConfig { Ratio = 0.5, GroupSize = 2, Rank = 64 } },
        YocoKvCache.CodecId => ModelConfig.Benchmark with { Yoco = new YocoConfig { SlidingWindow = 1024 } },
        YocoGatedRetention => ModelConfig.Benchmark with { Yoco = new YocoConfig { SelfDecoder = YocoSelfDecoder.GatedRetention } },
        FusedKvCache.CodecId => ModelConfig.Benchmark with { FusedKv = new FusedKvConfig() },
        _ => throw new ArgumentException($"Unknown codec '{codec}'.", nameof(codec)),
    };

    /// <summary>The codec id a bench row runs: its own, but yoco for both YOCO self-decoders.</summary>
    internal static string CodecOf(string row) => row == YocoGatedRetention ? YocoKvCache.CodecId : row;

    /// <summary>
    /// Writes the model and loads it with a cache pool for the largest of its cells that fit the budget. The pool is
    /// fixed at load, so a first load without one answers CacheBytesAt for the sizing.
    /// </summary>
    private static LlamaModel GenerateAndLoad(string directory, ModelConfig config, string[] codecs, int[] contexts, Options o, int threads)
    {
        Console.WriteLine();
        var sw = Stopwatch.StartNew();
        ModelGenerator.Write(directory, config, seed: 1);
        var options = new ModelLoadOptions { CacheBudgetBytes = 0, BlockTokens = o.BlockTokens, ComputeThreads = threads, WeightFormat = o.Weights, CacheFormat = o.Cache };
        long pool;
        using (var probe = LlamaModel.Load(directory, options))
        {
            pool = PoolBytes(probe, codecs, contexts, o);
        }

        var model = LlamaModel.Load(directory, options with { CacheBudgetBytes = pool });
        Console.WriteLine(
            $"model for {string.Join(", ", codecs)}: {model.ParameterCount / 1e6:F1}M parameters, codecs offered: {string.Join(", ", model.Codecs)}, "
            + $"cache pool {GiB(model.CacheBytesTotal):F2} GiB (generated and loaded in {sw.Elapsed.TotalSeconds:F1} s)");
        WarmUp(model, codecs);
        return model;
    }

    /// <summary>
    /// Decode steps before the model's first cell, so that the pass's scratch, the first blocks of the pool and every
    /// kernel a cell times are touched and compiled here rather than in a timed step (the bench runs without tiered
    /// compilation). The caches start just past the fourier codec's exact tokens (init + window of the defaults the
    /// generated model uses), so its middle-segment path runs too: a 1k cell crosses into it during its timed steps.
    /// </summary>
    private const int WarmUpSteps = 40;

    private static readonly int WarmUpContext = FourierConfig.Default(ModelConfig.Benchmark) is var f ? f.InitTokens + f.Window : 0;

    private static void WarmUp(LlamaModel model, string[] codecs)
    {
        foreach (string codec in codecs.Select(CodecOf).Where(model.Codecs.Contains))
        {
            using var batch = new DecodeBatch(model, codec, sessions: 2, WarmUpContext);
            batch.RunPasses(WarmUpSteps);
        }
    }

    private static long PoolBytes(LlamaModel probe, string[] codecs, int[] contexts, Options o)
    {
        long block = BlockBytes(probe, o);
        long pool = o.CapacityBytes is { } capacity ? (capacity + block - 1) / block * block : 0;
        foreach (string codec in codecs.Select(CodecOf).Where(probe.Codecs.Contains))
        {
            // The warm-up's two caches must fit too.
            pool = Math.Max(pool, 2 * ((probe.CacheBytesAt(codec, WarmUpContext + WarmUpSteps) + block - 1) / block + SpareBlocksPerCache) * block);
            foreach (int context in contexts)
            {
                long perCache = probe.CacheBytesAt(codec, o.FinalTokens(context));
                long blocks = (perCache + block - 1) / block + SpareBlocksPerCache;
                foreach (int sessions in o.CapacityBytes is null ? o.Sessions.Where(s => s * perCache <= o.BudgetBytes) : [])
                {
                    pool = Math.Max(pool, sessions * blocks * block);
                }
            }
        }

        return pool;
    }

    /// <summary>A pool block holds BlockTokens tokens of the model's own codec (Codecs[0]), whose bytes grow linearly.</summary>
    private static long BlockBytes(LlamaModel model, Options o) =>
        model.CacheBytesAt(model.Codecs[0], 2 * o.BlockTokens) - model.CacheBytesAt(model.Codecs[0], o.BlockTokens);

    private static async Task RunCodecAsync(LlamaModel model, string row, int[] contexts, Options o, MemoryBandwidth bandwidth, List<Result> results)
    {
        Console.WriteLine();
        string codec = CodecOf(row);
        if (!model.Codecs.Contains(codec))
        {
            Console.WriteLine($"{row}: not offered by its model (codecs: {string.Join(", ", model.Codecs)}), skipped");
            return;
        }

        Console.WriteLine(
            $"{row}: CacheBytesAt per session {string.Join(", ", contexts.Select(c => $"{MiB(model.CacheBytesAt(codec, c)):F1} MiB at {c}"))}");
        Console.WriteLine(
            $"{"context",8} {"sessions",8} {"tok/s",9} {"ms/pass",8} {"MB/token",9} {"GB/s",7} {"ceiling",7} {"probes",9} {"of ceiling",10} {"alloc B/pass",12} "
            + $"{"resident MiB",12} {"codec MiB",10} {"overhead",9}");
        foreach (int context in contexts)
        {
            if (o.CapacityBytes is { } capacity)
            {
                // Sessions per budget: as many caches of this context as the pool's blocks hold, all decoding.
                long block = BlockBytes(model, o);
                long blocks = (model.CacheBytesAt(codec, o.FinalTokens(context)) + block - 1) / block + SpareBlocksPerCache;
                int fit = (int)Math.Min(int.MaxValue, capacity / block / blocks);
                Console.WriteLine($"{context,8} {fit,8} sessions fit in {o.CapacityGiB:G} GiB ({fit / o.CapacityGiB:F1} per GiB)");
                if (fit > 0)
                {
                    results.Add(await RunCellAsync(model, codec, context, fit, o with { Scheduler = o.Scheduler || fit > LlamaModel.ChunkTokens }, bandwidth) with { Codec = row });
                }

                continue;
            }

            foreach (int sessions in o.Sessions)
            {
                long need = sessions * model.CacheBytesAt(codec, o.FinalTokens(context));
                if (need > o.BudgetBytes)
                {
                    Console.WriteLine($"{context,8} {sessions,8}   skipped: the caches need {GiB(need):F1} GiB, more than the {o.MemoryGiB:G} GiB budget");
                    continue;
                }

                results.Add(await RunCellAsync(model, codec, context, sessions, o, bandwidth) with { Codec = row });
            }
        }
    }

    private static async Task<Result> RunCellAsync(LlamaModel model, string codec, int context, int sessions, Options o, MemoryBandwidth bandwidth)
    {
        using var batch = new DecodeBatch(model, codec, sessions, context);
        using var scheduler = o.Scheduler ? new BatchScheduler(model, new BatchSchedulerOptions()) : null;
        _ = scheduler is null ? batch.RunPasses(WarmupSteps) : await batch.RunScheduledAsync(scheduler, WarmupSteps);
        var (timing, probes) = await TimedStepsAsync(batch, scheduler, o.Steps, bandwidth);
        double ceiling = probes.Average();
        long resident = model.CacheBytesTotal - model.CacheBytesFree;
        long held = batch.CacheBytes;

        var c = model.Config;
        long tokens = (long)sessions * o.Steps;
        long embedding = c.TieWordEmbeddings ? 0 : model.EmbeddingBytes;
        double bytesRead = timing.Passes * (double)(model.WeightBytes - embedding)
            + tokens * ((double)c.HiddenSize * sizeof(float) + model.CacheBytesReadAt(codec, context));
        double tokensPerSecond = tokens / timing.Seconds;
        double gbps = bytesRead / timing.Seconds / 1e9;
        Console.WriteLine(
            $"{context,8} {sessions,8} {tokensPerSecond,9:F1} {timing.Seconds / timing.Passes * 1e3,8:F2} {bytesRead / tokens / 1e6,9:F1} {gbps,7:F1} "
            + $"{ceiling,7:F1} {$"{probes[0]:F0}, {probes[1]:F0}",9} {gbps / ceiling,10:P0} {(double)timing.AllocatedBytes / timing.Passes,12:F0} {MiB(resident / sessions),12:F1} {MiB(held / sessions),10:F1} "
            + $"{(double)resident / held - 1,9:P1}");
        return new Result(codec, context, sessions, o.Weights.ToString(), o.Cache.ToString(), tokensPerSecond, gbps / ceiling, bytesRead / tokens, o.CapacityGiB);
    }

    private static void PrintSummary(List<Result> results, Options o)
    {
        Console.WriteLine();
        Console.WriteLine("summary against the issue's targets, from the cells measured in this run:");
        var single = results.Where(r => r.Sessions == 1).ToList();
        Console.WriteLine(single.Count == 0
            ? "  (a) 1 session, share of the memory read ceiling: no 1-session cell measured"
            : $"  (a) 1 session, share of the memory read ceiling: best {Describe(single.MaxBy(r => r.OfCeiling))}, worst {Describe(single.MinBy(r => r.OfCeiling))}");

        // A decode step must read its weights and caches, so at equal bandwidth a ratio of tok/s cannot exceed the
        // inverse ratio of bytes read per token, printed in brackets, unless re-read bytes come from the CPU's
        // caches (YOCO's cross layers re-read one global cache).
        Console.WriteLine("  (b) 16 sessions / 1 session, aggregate tok/s (target >= 6x) [bytes-read bound: bytes/token of 1 session / of 16]:");
        foreach (string codec in results.Select(r => r.Codec).Distinct())
        {
            var ratios = results.Where(r => r.Codec == codec).Select(r => r.Context).Distinct()
                .Select(context => $"{context}: {Ratio(results, (codec, context, 16), (codec, context, 1))}");
            Console.WriteLine($"      {codec,-9} {string.Join("   ", ratios)}");
        }

        int at = Math.Min(8192, ModelConfig.Benchmark.MaxPositionEmbeddings - WarmupSteps - o.Steps);
        foreach (int sessions in (int[])[1, 16])
        {
            Console.WriteLine(
                $"  (c) {sessions} session(s) at {at}: yoco / full {Ratio(results, ("yoco", at, sessions), ("full", at, sessions))} (target >= 3x), "
                + $"yoco-gret / full {Ratio(results, (YocoGatedRetention, at, sessions), ("full", at, sessions))}, "
                + $"svd-gqa / full {Ratio(results, ("svd-gqa", at, sessions), ("full", at, sessions))} (target >= 1.6x)");
        }
    }

    private static string Describe(Result r) => $"{r.OfCeiling:P0} ({r.Codec} at {r.Context})";

    /// <summary>tok/s of cell a over cell b, and in brackets b's bytes read per token over a's.</summary>
    private static string Ratio(List<Result> results, (string Codec, int Context, int Sessions) a, (string Codec, int Context, int Sessions) b)
    {
        Result? Cell((string Codec, int Context, int Sessions) cell) => results
            .Where(r => (r.Codec, r.Context, r.Sessions) == cell).Select(r => (Result?)r).FirstOrDefault();
        return Cell(a) is { } x && Cell(b) is { } y
            ? $"{x.TokensPerSecond / y.TokensPerSecond:F2}x [{y.BytesPerToken / x.BytesPerToken:F2}x]"
            : "n/a";
    }

    private static double GiB(long bytes) => bytes / (double)(1L << 30);

    private static double MiB(long bytes) => bytes / (double)(1 << 20);
}
