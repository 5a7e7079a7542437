using KvCache.GpuWorker;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>Models with each KV-cache codec, generated once for the test run.</summary>
public sealed class CodecModelsFixture
{
    public CodecModelsFixture()
    {
        var root = Directory.CreateTempSubdirectory("kvcache-codec-models-").FullName;
        var baseModel = Generate(root, "base-llama", ModelConfig.Demo);
        var svdGqa = Path.Combine(root, "svd-llama");
        SvdGqaConverter.Convert(baseModel, svdGqa, new SvdGqaOptions { Ratio = 0.5, CalibrationTokens = 1024, SequenceLength = 256 });
        Root = root;
        Models = new Dictionary<string, (string, Func<ModelConfig, int, long>, Func<ModelConfig, long>)>
        {
            [FullKvCache.CodecId] = (baseModel, (c, n) => n * FullKvCache.BytesPerTokenFor(c), FullKvCache.BytesPerTokenFor),
            [SvdGqaKvCache.CodecId] = (svdGqa, (c, n) => n * SvdGqaKvCache.BytesPerTokenFor(c), SvdGqaKvCache.BytesPerTokenFor),
            // A window shorter than the prompt, so the restored rings have wrapped.
            [YocoKvCache.CodecId] = (
                Generate(root, "yoco-llama", ModelConfig.Demo with { Yoco = new YocoConfig { SlidingWindow = 32 } }),
                YocoKvCache.BytesAt,
                c => 2L * c.NumKeyValueHeads * c.HeadDim * sizeof(float)),
            [FusedKvCache.CodecId] = (
                Generate(root, "fusedkv-llama", ModelConfig.Demo with { FusedKv = new FusedKvConfig() }),
                (c, n) => n * FusedKvCache.BytesPerTokenFor(c),
                FusedKvCache.BytesPerTokenFor),
            // Window 16 and a 90-token prompt: most of the context lives in the Fourier coefficients.
            [FourierKvCache.CodecId] = (
                Calibrated(Generate(root, "fourier-llama", ModelConfig.Demo)),
                FourierBytesAt,
                c => 4L * 2 * c.NumHiddenLayers * c.NumKeyValueHeads * (c.HeadDim - CompressedDims(c))),
            [FusedKvCache.LiteCodecId] = (
                Generate(root, "fusedkv-lite-llama", ModelConfig.Demo with { FusedKv = new FusedKvConfig { Lite = true } }),
                (c, n) => n * FusedKvCache.BytesPerTokenFor(c),
                FusedKvCache.BytesPerTokenFor),
        };
    }

    public string Root { get; }

    /// <summary>Codec → the model directory serving it, the codec's cache bytes at a position and its bytes per token, by formula.</summary>
    public IReadOnlyDictionary<string, (string Directory, Func<ModelConfig, int, long> CacheBytes, Func<ModelConfig, long> BytesPerToken)> Models { get; }

    private const int FourierWindow = 16;
    private const int FourierFrequencies = 8;

    private static string Calibrated(string directory)
    {
        FourierCalibrator.Calibrate(directory, new FourierCalibrationOptions
        {
            DimsFraction = 0.5,
            Frequencies = FourierFrequencies,
            Window = FourierWindow,
            CalibrationTokens = 256,
        });
        return directory;
    }

    private static int CompressedDims(ModelConfig c) => c.HeadDim / 2;

    /// <summary>The paper's layout: 4 initial and W recent tokens exact, the middle as 2k coefficients over m dims plus its d − m exact dims.</summary>
    private static long FourierBytesAt(ModelConfig c, int position)
    {
        long kvHeads = 2L * c.NumHiddenLayers * c.NumKeyValueHeads;
        int d = c.HeadDim, m = CompressedDims(c), exact = 4 + FourierWindow;
        long floats = (long)d * Math.Min(position, exact);
        if (position > exact)
        {
            floats += 2L * FourierFrequencies * m + (long)(d - m) * (position - exact);
        }

        return 4 * kvHeads * floats;
    }

    private static string Generate(string root, string name, ModelConfig config)
    {
        var directory = Path.Combine(root, name);
        ModelGenerator.Write(directory, config, seed: 7);
        return directory;
    }
}
