using System.Globalization;
using KvCache.GpuWorker;

// Offline model conversions. Arguments are parsed by hand: System.CommandLine is not among the central packages.
const string Usage = """
    usage: kvcache-convert convert-svd-gqa --model DIR [--out DIR2] [--ratio 0.5] [--group-size T]
                                           [--calibration-tokens 4096] [--calibration-seed 1] [--sequence-length 512] [--threads N]
                                           [--calibration-file PATH [--calibration-format bytes|int32]]

    Writes an SVD-GQA conversion of the Llama checkpoint in DIR (config.json + model.safetensors) to DIR2
    (default: DIR-svd-gqa-rRATIO beside DIR; the directory name is the model id the silo serves). The converted
    model offers the "svd-gqa" codec: its cache holds RATIO × the full cache's bytes per token. Without --group-size,
    the group size is the one nearest to 1/RATIO that divides the KV heads and gives a whole rank; a bad one is
    refused with the list of valid ones.
    Calibration runs the original model over generated token ids (SplitMix64 from the seed, uniform over the vocabulary),
    or over the token ids of --calibration-file, read in order: "bytes" (the default) takes each byte as a token id, which
    is the text itself for a byte-level model (vocab 256); "int32" reads little-endian int32 ids (any tokenizer).
    With a file, --calibration-tokens defaults to the smaller of its default and the ids the file holds.

           kvcache-convert calibrate-fourier --model DIR [--dims-fraction 0.5] [--k 32] [--window 1024] [--horizon T]
                                             [--rule post-rope|paper] [--layer-spread 0.5]
                                             [--calibration-tokens 2048] [--calibration-seed 1] [--threads N]
                                             [--calibration-file PATH [--calibration-format bytes|int32]]

    Chooses the head dimensions the "fourier" codec compresses (lowest reconstruction error over a generated
    sequence, or the first ids of --calibration-file as above) and writes DIR/fourier.json. Without it a plain model's "fourier" codec uses uncalibrated defaults.
    --rule post-rope (the default) ranks the cached, post-RoPE keys and compresses --dims-fraction of every layer's dims;
    --rule paper ranks keys before RoPE (FourierAttention's rule) and compresses more in the first layers and less in
    the last: layer l of L takes --dims-fraction · (1 + s · (1 − 2l/(L − 1))), s = --layer-spread.
    """;

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine(Usage);
    return args.Length == 0 ? 2 : 0;
}

if (args[0] is not ("convert-svd-gqa" or "calibrate-fourier"))
{
    Console.Error.WriteLine($"Unknown command '{args[0]}'.\n{Usage}");
    return 2;
}

var values = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 1; i < args.Length; i += 2)
{
    if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
    {
        Console.Error.WriteLine($"Expected '--name value', got '{args[i]}'.\n{Usage}");
        return 2;
    }

    values[args[i][2..]] = args[i + 1];
}

string[] known = args[0] == "calibrate-fourier"
    ? ["model", "dims-fraction", "k", "window", "horizon", "rule", "layer-spread", "calibration-tokens", "calibration-seed", "threads", "calibration-file", "calibration-format"]
    : ["model", "out", "ratio", "group-size", "calibration-tokens", "calibration-seed", "sequence-length", "threads", "calibration-file", "calibration-format"];
if (values.Keys.FirstOrDefault(k => !known.Contains(k)) is { } unknown)
{
    Console.Error.WriteLine($"Unknown option --{unknown}.\n{Usage}");
    return 2;
}

if (!values.TryGetValue("model", out string? model))
{
    Console.Error.WriteLine($"--model is required.\n{Usage}");
    return 2;
}

try
{
    int[]? ids = values.TryGetValue("calibration-file", out var file) ? ReadIds(file, values.GetValueOrDefault("calibration-format", "bytes")) : null;
    int CalibrationTokens(int fallback) => values.TryGetValue("calibration-tokens", out var n)
        ? int.Parse(n, CultureInfo.InvariantCulture)
        : Math.Min(fallback, ids?.Length ?? int.MaxValue);
    if (args[0] == "calibrate-fourier")
    {
        var fourierDefaults = new FourierCalibrationOptions();
        int Int(string name, int fallback) => values.TryGetValue(name, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
        var fourier = FourierCalibrator.Calibrate(model, new FourierCalibrationOptions
        {
            DimsFraction = values.TryGetValue("dims-fraction", out var f) ? double.Parse(f, CultureInfo.InvariantCulture) : fourierDefaults.DimsFraction,
            Rule = values.GetValueOrDefault("rule", "post-rope") switch
            {
                "post-rope" => FourierDimensionRule.PostRope,
                "paper" => FourierDimensionRule.PreRopeLayered,
                var other => throw new ArgumentException($"--rule must be post-rope or paper, got '{other}'."),
            },
            LayerSpread = values.TryGetValue("layer-spread", out var spread) ? double.Parse(spread, CultureInfo.InvariantCulture) : fourierDefaults.LayerSpread,
            Frequencies = Int("k", fourierDefaults.Frequencies),
            Window = Int("window", fourierDefaults.Window),
            Horizon = values.TryGetValue("horizon", out var h) ? int.Parse(h, CultureInfo.InvariantCulture) : null,
            CalibrationTokens = CalibrationTokens(fourierDefaults.CalibrationTokens),
            CalibrationIds = ids,
            CalibrationSeed = values.TryGetValue("calibration-seed", out var fs) ? long.Parse(fs, CultureInfo.InvariantCulture) : fourierDefaults.CalibrationSeed,
            ComputeThreads = Int("threads", fourierDefaults.ComputeThreads),
        });
        Console.WriteLine(FormattableString.Invariant(
            $"{Path.Combine(model, FourierConfig.FileName)}: per layer, {string.Join(" / ", Enumerable.Range(0, fourier.KeyDims.Length).Select(fourier.CompressedDimsOf))} of each head's dims compressed to {2 * fourier.Frequencies} coefficients, window {fourier.Window}, horizon {fourier.Horizon}"));
        return 0;
    }

    var defaults = new SvdGqaOptions();
    var options = new SvdGqaOptions
    {
        Ratio = values.TryGetValue("ratio", out var r) ? double.Parse(r, CultureInfo.InvariantCulture) : defaults.Ratio,
        GroupSize = values.TryGetValue("group-size", out var g) ? int.Parse(g, CultureInfo.InvariantCulture) : null,
        CalibrationTokens = CalibrationTokens(defaults.CalibrationTokens),
        CalibrationIds = ids,
        CalibrationSeed = values.TryGetValue("calibration-seed", out var s) ? long.Parse(s, CultureInfo.InvariantCulture) : defaults.CalibrationSeed,
        SequenceLength = values.TryGetValue("sequence-length", out var l) ? int.Parse(l, CultureInfo.InvariantCulture) : defaults.SequenceLength,
        ComputeThreads = values.TryGetValue("threads", out var t) ? int.Parse(t, CultureInfo.InvariantCulture) : defaults.ComputeThreads,
    };
    string source = Path.TrimEndingDirectorySeparator(Path.GetFullPath(model));
    string output = values.TryGetValue("out", out var o)
        ? o
        : $"{source}-svd-gqa-r{options.Ratio.ToString(CultureInfo.InvariantCulture)}";
    var result = SvdGqaConverter.Convert(source, output, options);
    var svd = result.Config.SvdGqa!;
    Console.WriteLine($"{output}: svd-gqa ratio {svd.Ratio}, groups of {svd.GroupSize} KV heads, rank {svd.Rank}, "
        + $"{SvdGqaKvCache.BytesPerTokenFor(result.Config)} cache bytes per token (full: {FullKvCache.BytesPerTokenFor(result.Config with { SvdGqa = null })})");
    for (int layer = 0; layer < result.KeyEnergyKept.Count; layer++)
    {
        Console.WriteLine(FormattableString.Invariant($"  layer {layer}: calibration energy kept K {result.KeyEnergyKept[layer]:P2}, V {result.ValueEnergyKept[layer]:P2}"));
    }

    return 0;
}
catch (Exception e) when (e is ArgumentException or FormatException or IOException or NotSupportedException or InvalidDataException or OverflowException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}

static int[] ReadIds(string path, string format)
{
    byte[] raw = File.ReadAllBytes(path);
    return format switch
    {
        "bytes" => Array.ConvertAll(raw, b => (int)b),
        "int32" when raw.Length % sizeof(int) == 0 => Enumerable.Range(0, raw.Length / sizeof(int))
            .Select(i => System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(raw.AsSpan(i * sizeof(int)))).ToArray(),
        "int32" => throw new FormatException($"{path}: {raw.Length} bytes is not a whole number of int32 token ids."),
        _ => throw new FormatException($"--calibration-format must be 'bytes' or 'int32', got '{format}'."),
    };
}
