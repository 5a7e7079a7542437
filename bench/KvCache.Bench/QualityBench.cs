using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KvCache.Bench.Quality;
using KvCache.GpuWorker;

namespace KvCache.Bench;

/// <summary>
/// Held-out quality of every codec on the byte-level models trained by bench/quality/train.py: bytes per token,
/// perplexity beside the Full model's, and top-1 next-token agreement with Full, at each context.
/// </summary>
/// <remarks>
/// SVD-GQA (½, ¼) and Fourier (by the calibrator's post-RoPE rule and by the paper's) are derived from the plain Llama
/// at run time (deterministic, into a temp dir), calibrated on bench/quality/calibration.txt (training text); "+ft" rows
/// are those conversions after train.py's short recovery fine-tune (committed models). YOCO
/// (sliding window, gated retention), FusedKV and FusedKV-Lite are their own trained models: their "Full" is the plain
/// Llama of the same size trained the same way. Each window of held-out text starts a fresh session.
/// </remarks>
public static class QualityBench
{
    private const string Usage = "usage: quality [--contexts 512,2048] [--tokens 16384] [--dir bench/quality] [--fourier-window 256]";

    private sealed record Entry(string Label, string Model, string Codec);

    public static Task<int> RunAsync(string[] args)
    {
        int[] contexts = [512, 2048];
        int tokens = 16384, fourierWindow = 256;
        string? dir = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--contexts" when i + 1 < args.Length:
                    contexts = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
                    break;
                case "--tokens" when i + 1 < args.Length:
                    tokens = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--dir" when i + 1 < args.Length:
                    dir = args[++i];
                    break;
                case "--fourier-window" when i + 1 < args.Length:
                    fourierWindow = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                default:
                    Console.Error.WriteLine(Usage);
                    return Task.FromResult(2);
            }
        }

        dir ??= Path.Combine(RepositoryRoot(), "bench", "quality");
        string models = Path.Combine(dir, "models");
        int[] heldOut = Array.ConvertAll(File.ReadAllBytes(Path.Combine(dir, "heldout.txt")), b => (int)b);
        int[] calibration = Array.ConvertAll(File.ReadAllBytes(Path.Combine(dir, "calibration.txt")), b => (int)b);
        var temp = Directory.CreateTempSubdirectory("kvcache-quality-bench-");
        try
        {
            var sw = Stopwatch.StartNew();
            string llama = Path.Combine(models, "llama");
            // Fourier twice, by the calibrator's two rules: post-RoPE ranking with one share for every layer, and the
            // paper's pre-RoPE ranking with shares from more (first layer) to less (last), the same mean.
            var fourier = new Dictionary<FourierDimensionRule, (string Directory, FourierConfig Config)>();
            foreach (var rule in (FourierDimensionRule[])[FourierDimensionRule.PostRope, FourierDimensionRule.PreRopeLayered])
            {
                string directory = Path.Combine(temp.FullName, $"llama-fourier-{rule}");
                CopyDirectory(llama, directory);
                // Window scaled to the bench's contexts (the paper's 1024 would leave 512 untouched); the basis spans the
                // longest middle segment the bench produces.
                fourier[rule] = (directory, FourierCalibrator.Calibrate(directory, new FourierCalibrationOptions
                {
                    Window = fourierWindow,
                    Horizon = contexts.Max() - 4 - fourierWindow,
                    CalibrationTokens = Math.Min(2048, calibration.Length),
                    CalibrationIds = calibration,
                    Rule = rule,
                }));
            }

            var svd = new Dictionary<double, string>();
            foreach (double ratio in (double[])[0.5, 0.25])
            {
                svd[ratio] = Path.Combine(temp.FullName, $"llama-svd-gqa-r{ratio.ToString(CultureInfo.InvariantCulture)}");
                // Calibration sequences as long as the longest context, so the key basis sees RoPE at every position measured.
                SvdGqaConverter.Convert(llama, svd[ratio], new SvdGqaOptions
                {
                    Ratio = ratio,
                    CalibrationTokens = calibration.Length,
                    CalibrationIds = calibration,
                    SequenceLength = contexts.Max(),
                });
            }

            static string PerLayer(FourierConfig f) => string.Join("/", Enumerable.Range(0, f.KeyDims.Length).Select(f.CompressedDimsOf));
            var post = fourier[FourierDimensionRule.PostRope].Config;
            var paper = fourier[FourierDimensionRule.PreRopeLayered].Config;
            Console.WriteLine(FormattableString.Invariant(
                $"calibrated on {calibration.Length} training-text tokens in {sw.Elapsed.TotalSeconds:F1} s: SVD-GQA ½, ¼; Fourier k {post.Frequencies}, window {post.Window}, horizon {post.Horizon}, ")
                + FormattableString.Invariant(
                $"dims compressed per head of layers 0.. (of {ModelConfig.Load(Path.Combine(llama, "config.json")).HeadDim}): fourier {PerLayer(post)} (post-RoPE ranking), fourier-paper {PerLayer(paper)} (pre-RoPE ranking, spread {paper.LayerSpread})"));

            Entry[] entries =
            [
                new("full", llama, FullKvCache.CodecId),
                new("svd-gqa ½", svd[0.5], SvdGqaKvCache.CodecId),
                new("svd-gqa ¼", svd[0.25], SvdGqaKvCache.CodecId),
                new("svd-gqa ½ +ft", Path.Combine(models, "svd-gqa-r0.5-ft"), SvdGqaKvCache.CodecId),
                new("svd-gqa ¼ +ft", Path.Combine(models, "svd-gqa-r0.25-ft"), SvdGqaKvCache.CodecId),
                new("fourier", fourier[FourierDimensionRule.PostRope].Directory, FourierKvCache.CodecId),
                new("fourier-paper", fourier[FourierDimensionRule.PreRopeLayered].Directory, FourierKvCache.CodecId),
                new("yoco", Path.Combine(models, "yoco"), YocoKvCache.CodecId),
                new("yoco-gret", Path.Combine(models, "yoco-gret"), YocoKvCache.CodecId),
                new("fusedkv", Path.Combine(models, "fusedkv"), FusedKvCache.CodecId),
                new("fusedkv-lite", Path.Combine(models, "fusedkv-lite"), FusedKvCache.LiteCodecId),
            ];
            var loaded = entries.Select(e => e.Model).Distinct().ToDictionary(m => m, m => LlamaModel.Load(m, new ModelLoadOptions { ComputeThreads = 1 }));
            try
            {
                CheckAgainstReference(models, loaded, entries);
                return Task.FromResult(Evaluate(entries, loaded, heldOut, contexts, tokens));
            }
            finally
            {
                foreach (var model in loaded.Values)
                {
                    model.Dispose();
                }
            }
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }

    private static int Evaluate(Entry[] entries, Dictionary<string, LlamaModel> loaded, int[] heldOut, int[] contexts, int tokens)
    {
        var sw = Stopwatch.StartNew();
        var jobs = entries.SelectMany(e => contexts.Select(c => (Entry: e, Context: c))).ToArray();
        var results = new HeldOutResult[jobs.Length];

        // One thread per session: the model is tiny, so sessions in parallel beat parallel matmuls.
        Parallel.For(0, jobs.Length, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, j =>
        {
            int context = jobs[j].Context;
            int count = Math.Min(tokens / context, heldOut.Length / context);
            var windows = Enumerable.Range(0, count).Select(w => heldOut.AsSpan(w * context, context).ToArray()).ToArray();
            results[j] = HeldOutEvaluator.Run(loaded[jobs[j].Entry.Model], jobs[j].Entry.Codec, windows);
        });

        Console.WriteLine(FormattableString.Invariant(
            $"held-out text: bench/quality/heldout.txt, byte-level tokens, first {tokens} per context in fresh {string.Join(" / ", contexts)}-token sessions ({sw.Elapsed.TotalSeconds:F0} s)"));
        Console.WriteLine("Full = the plain Llama with the full cache; for yoco (sliding window 128), yoco-gret (gated retention), fusedkv and fusedkv-lite it is the plain Llama of the same size trained the same way.");
        Console.WriteLine("bytes/token = the engine's cache bytes / position at the window's end; fourier-paper = fourier calibrated by the paper's rule (pre-RoPE ranking, per-layer shares); +ft = after the recovery fine-tune.");
        Console.WriteLine();
        string header = $"| {"codec",-13} | {"context",7} | {"bytes/token",11} | {"vs full",7} | {"perplexity",10} | {"Full ppl",8} | {"top-1 agree",11} |";
        Console.WriteLine(header);
        Console.WriteLine(System.Text.RegularExpressions.Regex.Replace(header, "[^|]", "-"));
        foreach (int context in contexts)
        {
            HeldOutResult Find(string label) => results[Array.FindIndex(jobs, j => j.Entry.Label == label && j.Context == context)];
            foreach (var entry in entries)
            {
                var r = Find(entry.Label);
                var full = Find(entries[0].Label); // every row against the plain model with the full cache
                Console.WriteLine(FormattableString.Invariant(
                    $"| {entry.Label,-13} | {context,7} | {r.BytesPerToken,11:F1} | {r.BytesPerToken / full.BytesPerToken,7:P1} | {r.Perplexity,10:F3} | {full.Perplexity,8:F3} | {r.AgreementWith(full),11:P1} |"));
            }
        }

        return 0;
    }

    /// <summary>The trained weights must give the engine the logits of the independent PyTorch reference.</summary>
    private static void CheckAgainstReference(string models, Dictionary<string, LlamaModel> loaded, Entry[] entries)
    {
        const double Tolerance = 1e-3;
        foreach (var entry in entries.Where(e => e.Model.StartsWith(models, StringComparison.Ordinal)))
        {
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(entry.Model, "reference.json")));
            int[] ids = json.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            double[][] rows = json.RootElement.GetProperty("logits").EnumerateArray()
                .Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
            double error = HeldOutEvaluator.MaxReferenceError(loaded[entry.Model], entry.Codec, ids, rows);
            Console.WriteLine(FormattableString.Invariant($"{entry.Label}: engine vs PyTorch reference (llama_reference.py, float64), max |Δlogit| {error:G3}"));
            if (!(error <= Tolerance))
            {
                throw new InvalidOperationException($"{entry.Model}: the engine's logits differ from the reference by {error} (> {Tolerance}).");
            }
        }
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }
    }

    private static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Cluster.sln")))
            {
                return d.FullName;
            }
        }

        return Directory.GetCurrentDirectory();
    }
}
