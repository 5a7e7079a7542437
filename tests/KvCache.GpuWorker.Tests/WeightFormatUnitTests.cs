using Xunit.Abstractions;

namespace KvCache.GpuWorker.Tests;

/// <summary>Linear weights kept in bf16 (<see cref="WeightFormat.Bf16"/>) against f32.</summary>
public sealed class WeightFormatUnitTests(ITestOutputHelper output) : IDisposable
{
    private static readonly ModelConfig Config = ModelConfig.Demo with { MaxPositionEmbeddings = 256 };

    private readonly TempModels _models = new();

    public void Dispose() => _models.Dispose();

    [Theory]
    [InlineData("full")]
    [InlineData("yoco")]
    [InlineData("yoco-gret")]
    public void A_bf16_checkpoint_gives_identical_logits_and_fingerprint_in_either_format(string codec)
    {
        var config = codec switch
        {
            "yoco" => Config with { Yoco = new YocoConfig { SlidingWindow = 16 } },
            "yoco-gret" => Config with { Yoco = TestModels.GatedRetention },
            _ => Config,
        };
        var directory = Generate(config, TensorDtype.BF16);
        using var f32 = LlamaModel.Load(directory, TestModels.SmallOptions());
        using var bf16 = LlamaModel.Load(directory, TestModels.SmallOptions() with { WeightFormat = WeightFormat.Bf16 });

        Assert.Equal(f32.Fingerprint, bf16.Fingerprint);
        var expected = Run(f32);
        var actual = Run(bf16);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.True(expected[i].AsSpan().SequenceEqual(actual[i]), $"step {i}: logits differ");
        }
    }

    [Fact]
    public void An_f32_checkpoint_in_bf16_is_rounded_close_and_fingerprinted_apart()
    {
        var directory = Generate(Config, TensorDtype.F32);
        using var f32 = LlamaModel.Load(directory, TestModels.SmallOptions());
        using var bf16 = LlamaModel.Load(directory, TestModels.SmallOptions() with { WeightFormat = WeightFormat.Bf16 });

        Assert.NotEqual(f32.Fingerprint, bf16.Fingerprint);
        var expected = Run(f32);
        var actual = Run(bf16);
        float worst = 0, scale = 0;
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.False(expected[i].AsSpan().SequenceEqual(actual[i]), "bf16 rounding changed nothing: were the weights kept in f32?");
            for (int v = 0; v < expected[i].Length; v++)
            {
                worst = Math.Max(worst, Math.Abs(expected[i][v] - actual[i][v]));
                scale = Math.Max(scale, Math.Abs(expected[i][v]));
            }
        }

        output.WriteLine($"bf16 vs f32 weights: max |Δlogit| {worst:G4}, max |logit| {scale:G4}");
        Assert.True(worst <= 0.02f * scale, $"max |Δlogit| {worst} for logits up to {scale}");
    }

    /// <summary>A 40-token prompt in two chunks, then 8 greedy steps: the logits after each forward.</summary>
    private static List<float[]> Run(LlamaModel model)
    {
        using var cache = model.CreateCache(model.Codecs[0]);
        var logits = new float[model.Config.VocabSize];
        int[] prompt = TestModels.Tokens(40, model.Config.VocabSize, 8);
        var result = new List<float[]>();
        model.Forward(cache, prompt.AsSpan(0, 25), logits);
        result.Add((float[])logits.Clone());
        model.Forward(cache, prompt.AsSpan(25), logits);
        result.Add((float[])logits.Clone());
        for (int step = 0; step < 8; step++)
        {
            model.Forward(cache, [TestModels.ArgMax(logits)], logits);
            result.Add((float[])logits.Clone());
        }

        return result;
    }

    private string Generate(ModelConfig config, TensorDtype dtype) => _models.Generate(config, seed: 71, dtype);
}
