using System.Diagnostics;
using System.Globalization;
using KvCache.Bench.Internal;
using KvCache.GpuWorker;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using KvCache.Testing.Redis;
using Microsoft.Extensions.Options;

namespace KvCache.Bench;

/// <summary>
/// Resume versus recompute, the reason the service keeps caches: a session of N tokens on the benchmark model is
/// restored from its Redis snapshot, and in the same run its cache is rebuilt by reading its token log from Redis and
/// running the prefill again — what a service without spilled caches does. Both end in the same cache (checked: the
/// next-token logits are equal bit for bit).
///   resume [--codecs full,svd-gqa,yoco,yoco-gret,fusedkv,fourier] [--contexts 8192,32768] [--weights f32|bf16] [--cache f32|bf16] [--json PATH]
/// </summary>
public static class ResumeBench
{
    private const string Usage =
        "usage: resume [--codecs full,svd-gqa,yoco,yoco-gret,fusedkv,fourier] [--contexts 8192,32768] [--weights f32|bf16] [--cache f32|bf16] [--json PATH]";

    private sealed record BenchOptions(string[] Codecs, int[] Contexts, WeightFormat Weights, KvCacheFormat Cache, string? Json);

    /// <summary>One measured cell, for the JSON results.</summary>
    internal sealed record Result(
        string Codec, int Context, string Weights, string Cache, long CacheBytes, double RecomputeSeconds, double ResumeSeconds, double SpillSeconds);

    public static async Task<int> RunAsync(string[] args)
    {
        if (Parse(args) is not { } o)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }

        int threads = Environment.ProcessorCount;
        await using var redis = await RedisServer.StartAsync(new RedisServerOptions { FirstPort = 46000, LastPort = 46999 });
        var storeOptions = new RedisStoreOptions { Endpoint = redis.Endpoint };
        await using var connection = new RedisConnection(Options.Create(storeOptions));
        var store = new RedisSessionStore(connection, Options.Create(storeOptions));
        Console.WriteLine(
            $"resume bench: benchmark model ({ModelConfig.Benchmark.ParameterCount / 1e6:F1}M parameters, random weights, {o.Weights} weights, {o.Cache} caches), "
            + $"{threads} compute threads, redis-server {redis.Endpoint}");
        Console.WriteLine(
            "recompute = read the token log from Redis + prefill it (what a service without spilled caches does on a new node); "
            + "resume = restore the snapshot from Redis (SnapshotReader); ratio = recompute / resume");
        Console.WriteLine($"{"codec",-9} {"context",8} {"cache MiB",10} {"recompute s",12} {"tok/s",8} {"resume s",9} {"GB/s",6} {"ratio",8} {"spill s",8}");

        var results = new List<Result>();
        var root = Directory.CreateTempSubdirectory("kvcache-resume-bench-");
        try
        {
            foreach (var group in o.Codecs.GroupBy(DecodeBench.ConfigFor))
            {
                string directory = Path.Combine(root.FullName, string.Join('+', group));
                ModelGenerator.Write(directory, group.Key, seed: 1);
                var load = new ModelLoadOptions { CacheBudgetBytes = 0, ComputeThreads = threads, WeightFormat = o.Weights, CacheFormat = o.Cache };
                long pool;
                using (var probe = LlamaModel.Load(directory, load))
                {
                    // Two caches at the largest context: the recomputed one and the restored one.
                    pool = group.Select(DecodeBench.CodecOf).Where(probe.Codecs.Contains)
                        .Select(c => 2 * (probe.CacheBytesAt(c, o.Contexts.Max()) + (32L << 20))).DefaultIfEmpty(0).Max();
                }

                using var model = LlamaModel.Load(directory, load with { CacheBudgetBytes = pool });
                foreach (string row in group)
                {
                    if (!model.Codecs.Contains(DecodeBench.CodecOf(row)))
                    {
                        Console.WriteLine($"{row,-9} not offered by its model with {o.Cache} caches, skipped");
                        continue;
                    }

                    foreach (int context in o.Contexts)
                    {
                        results.Add(await RunCellAsync(model, store, row, context, o));
                    }
                }
            }
        }
        finally
        {
            root.Delete(recursive: true);
        }

        if (o.Json is { } json)
        {
            BenchResults.Write(json, "resume", results);
            Console.WriteLine($"results: {json}");
        }

        return 0;
    }

    private static async Task<Result> RunCellAsync(LlamaModel model, RedisSessionStore store, string row, int context, BenchOptions o)
    {
        string codec = DecodeBench.CodecOf(row);
        int vocab = model.Config.VocabSize;
        var key = new SessionKey("bench", $"resume-{row}-{context}");
        await store.DeleteAsync(key);
        await store.TryCreateAsync(new SessionRecord(key, model.Id, codec, DateTimeOffset.UtcNow));
        var random = new Random(context);
        int[] tokens = [.. Enumerable.Range(0, context).Select(_ => random.Next(vocab))];
        await store.AppendTokensAsync(key, 0, tokens);

        // Recompute: what a node without the snapshot does.
        var recomputedLogits = new float[vocab];
        var start = Stopwatch.GetTimestamp();
        var log = new int[context];
        int read = await store.ReadTokensAsync(key, 0, log);
        using var recomputed = model.CreateCache(codec);
        model.Forward(recomputed, log.AsSpan(0, read), recomputedLogits);
        double recompute = Stopwatch.GetElapsedTime(start).TotalSeconds;

        start = Stopwatch.GetTimestamp();
        await SnapshotWriter.WriteAsync(store, key, recomputed, model.Id, model.Fingerprint, recomputedLogits, CancellationToken.None);
        double spill = Stopwatch.GetElapsedTime(start).TotalSeconds;

        var restoredLogits = new float[vocab];
        start = Stopwatch.GetTimestamp();
        using var restored = model.CreateCache(codec);
        int? position = await SnapshotReader.RestoreAsync(store, key, restored, model.Id, model.Fingerprint, restoredLogits, CancellationToken.None);
        double resume = Stopwatch.GetElapsedTime(start).TotalSeconds;

        // Both caches must now be the same: the next token's logits agree bit for bit.
        if (position != context || !recomputedLogits.AsSpan().SequenceEqual(restoredLogits))
        {
            throw new InvalidOperationException($"{row} at {context}: the restored session differs from the recomputed one.");
        }

        int next = random.Next(vocab);
        model.Forward(recomputed, [next], recomputedLogits);
        model.Forward(restored, [next], restoredLogits);
        if (!recomputedLogits.AsSpan().SequenceEqual(restoredLogits))
        {
            throw new InvalidOperationException($"{row} at {context}: a step after the restore differs from the same step after the recompute.");
        }

        long bytes = restored.CacheBytes;
        Console.WriteLine(
            $"{row,-9} {context,8} {bytes / (double)(1 << 20),10:F1} {recompute,12:F2} {context / recompute,8:F0} {resume,9:F3} "
            + $"{bytes / resume / 1e9,6:F2} {recompute / resume,7:F0}x {spill,8:F3}");
        await store.DeleteAsync(key);
        return new Result(row, context, o.Weights.ToString(), o.Cache.ToString(), bytes, recompute, resume, spill);
    }

    private static BenchOptions? Parse(string[] args)
    {
        var o = new BenchOptions(["full", "svd-gqa", "yoco", "yoco-gret", "fusedkv", "fourier"], [8192, 32768], WeightFormat.F32, KvCacheFormat.F32, Json: null);
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                bool hasValue = i + 1 < args.Length;
                o = args[i] switch
                {
                    "--codecs" when hasValue => o with { Codecs = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries) },
                    "--contexts" when hasValue => o with
                    {
                        Contexts = [.. args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture))],
                    },
                    "--weights" when hasValue => o with { Weights = Enum.Parse<WeightFormat>(args[++i], ignoreCase: true) },
                    "--cache" when hasValue => o with { Cache = Enum.Parse<KvCacheFormat>(args[++i], ignoreCase: true) },
                    "--json" when hasValue => o with { Json = args[++i] },
                    _ => throw new FormatException(),
                };
            }
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            return null;
        }

        int max = ModelConfig.Benchmark.MaxPositionEmbeddings - 1;
        return o.Codecs.Length > 0 && o.Contexts.Length > 0 && o.Contexts.All(c => c is > 0 && c <= max) ? o : null;
    }
}
