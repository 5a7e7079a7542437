namespace KvCache.GpuWorker.Tests;

/// <summary>Generated models in temporary directories, and the committed reference fixtures.</summary>
internal static class TestModels
{
    /// <summary>Shape of the YOCO and FusedKV fixtures: 4 layers (2 self-decoder / cached, 2 cross-decoder / fused).</summary>
    public static readonly ModelConfig Tiny4Layers = new()
    {
        VocabSize = 256,
        HiddenSize = 64,
        IntermediateSize = 128,
        NumHiddenLayers = 4,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        HeadDim = 16,
        MaxPositionEmbeddings = 256,
    };

    /// <summary>YOCO's gated-retention self-decoder with the paper's temperature.</summary>
    public static readonly YocoConfig GatedRetention = new() { SelfDecoder = YocoSelfDecoder.GatedRetention };

    /// <summary>The committed fixture models (see Fixtures/README.md).</summary>
    public static readonly (string Name, ModelConfig Config, ulong Seed, TensorDtype Dtype)[] Fixtures =
    [
        ("tiny-f32", new ModelConfig
        {
            VocabSize = 256,
            HiddenSize = 64,
            IntermediateSize = 128,
            NumHiddenLayers = 2,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            HeadDim = 16,
            MaxPositionEmbeddings = 256,
        }, 1, TensorDtype.F32),
        ("tiny-bf16-tied", new ModelConfig
        {
            VocabSize = 256,
            HiddenSize = 64,
            IntermediateSize = 96,
            NumHiddenLayers = 3,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 1,
            HeadDim = 32,
            MaxPositionEmbeddings = 256,
            RmsNormEps = 1e-6,
            RopeTheta = 500000,
            TieWordEmbeddings = true,
        }, 2, TensorDtype.BF16),
        ("tiny-yoco", Tiny4Layers with { Yoco = new YocoConfig { SlidingWindow = 16 } }, 3, TensorDtype.F32),
        ("tiny-yoco-gret", Tiny4Layers with { Yoco = GatedRetention }, 10, TensorDtype.F32),
        ("tiny-fusedkv", Tiny4Layers with { FusedKv = new FusedKvConfig() }, 4, TensorDtype.F32),
        ("tiny-fusedkv-lite", Tiny4Layers with { FusedKv = new FusedKvConfig { Lite = true }, NumKeyValueHeads = 1, TieWordEmbeddings = true }, 5, TensorDtype.F32),
    ];

    public static string FixturesDirectory => Path.Combine(AppContext.BaseDirectory, "Fixtures");

    public static ModelLoadOptions SmallOptions(int threads = 2, long budget = 4 << 20, int blockTokens = 16) =>
        new() { CacheBudgetBytes = budget, BlockTokens = blockTokens, ComputeThreads = threads };

    /// <summary>Generates <paramref name="config"/> into a fresh temporary directory, deleted on dispose.</summary>
    public static TempModel Generate(ModelConfig config, ulong seed = 7, TensorDtype dtype = TensorDtype.F32)
    {
        var dir = Directory.CreateTempSubdirectory("kvcache-model-");
        ModelGenerator.Write(dir.FullName, config, seed, dtype);
        return new TempModel(dir.FullName);
    }

    /// <summary>The greedy next token: the first index of the largest logit.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            best = logits[i] > logits[best] ? i : best;
        }

        return best;
    }

    public static int[] Tokens(int count, int vocab, ulong seed)
    {
        var random = new Random((int)seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
    }
}

internal sealed class TempModel(string directory) : IDisposable
{
    public string Directory { get; } = directory;

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a leftover temp directory is harmless.
        }
    }
}

/// <summary>Temporary model directories a test class generates, deleted together.</summary>
internal sealed class TempModels : IDisposable
{
    private readonly List<TempModel> _models = [];

    /// <summary>Generates <paramref name="config"/> into a new temporary directory and returns it.</summary>
    public string Generate(ModelConfig config, ulong seed, TensorDtype dtype = TensorDtype.F32) => Add(TestModels.Generate(config, seed, dtype));

    public string Add(TempModel model)
    {
        _models.Add(model);
        return model.Directory;
    }

    public void Dispose()
    {
        foreach (var m in _models)
        {
            m.Dispose();
        }
    }
}
