using System.Text.Json;
using Xunit.Abstractions;

namespace KvCache.GpuWorker.Tests;

/// <summary>
/// The paper's Fourier dimension rule (<see cref="FourierDimensionRule.PreRopeLayered"/>): pre-RoPE ranking and per-layer
/// compression, against Fixtures/fourier_reference.py (float64) on the 3-layer tiny-bf16-tied model: the dims kept per
/// layer, and the logits of a prompt and greedy decode through the calibrated fourier codec; then the codec checks
/// (chunking, snapshot round trip, bytes formula) with layers of different m.
/// </summary>
public sealed class FourierPaperRuleUnitTests(ITestOutputHelper output) : IDisposable
{
    private const float Tolerance = 1e-4f;

    private readonly TempModels _models = new();

    public void Dispose() => _models.Dispose();

    [Fact]
    public void Calibration_keeps_the_reference_dims_per_layer_and_decodes_like_the_reference()
    {
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestModels.FixturesDirectory, "tiny-bf16-tied.fourier-paper.reference.json")));
        var root = fixture.RootElement;
        string directory = Calibrated(root, FourierDimensionRule.PreRopeLayered, out var config);
        Assert.Equal(Dims(root.GetProperty("key_dims")), config.KeyDims);
        Assert.Equal(Dims(root.GetProperty("value_dims")), config.ValueDims);
        Assert.Equal([24, 16, 8], Enumerable.Range(0, 3).Select(config.CompressedDimsOf));

        int[] prompt = Ints(root.GetProperty("prompt"));
        int[] greedy = Ints(root.GetProperty("greedy"));
        float[][] expected = root.GetProperty("logits").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray();
        using var model = LlamaModel.Load(directory, TestModels.SmallOptions());
        using var cache = model.CreateCache(FourierKvCache.CodecId);
        var logits = new float[model.Config.VocabSize];
        model.Forward(cache, prompt, logits);
        float worst = 0;
        for (int step = 0; step < expected.Length; step++)
        {
            for (int i = 0; i < logits.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(logits[i] - expected[step][i]));
            }

            Assert.Equal(greedy[step], TestModels.ArgMax(logits));
            if (step + 1 < expected.Length)
            {
                model.Forward(cache, [greedy[step]], logits);
            }
        }

        output.WriteLine($"fourier (paper rule) vs fourier_reference.py: worst max-abs logit error over {expected.Length} positions = {worst:E2}");
        Assert.True(worst <= Tolerance, $"max abs logit error {worst} > {Tolerance}");
    }

    [Fact]
    public void Todays_rule_stays_an_option_and_ranks_post_rope_keys()
    {
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestModels.FixturesDirectory, "tiny-bf16-tied.fourier-paper.reference.json")));
        Calibrated(fixture.RootElement, FourierDimensionRule.PostRope, out var post);
        Calibrated(fixture.RootElement, FourierDimensionRule.PreRopeLayered, out var paper);
        Assert.Equal([16, 16, 16], Enumerable.Range(0, 3).Select(post.CompressedDimsOf));
        Assert.NotEqual(paper.KeyDims[1], post.KeyDims[1]); // layer 1 compresses 16 dims under both rules, not the same ones
        Assert.DoesNotContain("dims_rule", post.ToJson());
        Assert.Contains("\"dims_rule\": \"pre_rope_layered\"", paper.ToJson());
        Assert.Equal(paper.ToJson(), FourierConfig.FromJson(paper.ToJson()).ToJson());
        Assert.Equal(FourierDimensionRule.PostRope, FourierConfig.FromJson(post.ToJson()).Rule);
        Assert.Throws<FormatException>(() => FourierConfig.FromJson(paper.ToJson().Replace("pre_rope_layered", "other")));
    }

    /// <summary>Three layers of 8 dims: layer l takes fraction · (1 + spread · (1 − l)) of them, rounded half away from zero.</summary>
    [Theory]
    [InlineData(0.5, 0.5, new[] { 6, 4, 2 })]
    [InlineData(0.25, 0.5, new[] { 3, 2, 1 })]
    [InlineData(0.5, 1, new[] { 8, 4, 0 })]
    [InlineData(0.5, 0, new[] { 4, 4, 4 })]
    public void Layer_shares_spread_around_the_mean_from_first_to_last(double fraction, double spread, int[] expected)
    {
        var c = TestModels.Fixtures[1].Config with { HeadDim = 8 };
        Assert.Equal(expected, FourierConfig.LayerCompressedCounts(c, fraction, spread));
        Assert.Throws<ArgumentException>(() => FourierConfig.LayerCompressedCounts(c, 0.5, 1.5));
    }

    [Fact]
    public void Layers_of_different_m_pass_the_codec_checks_and_the_bytes_formula()
    {
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestModels.FixturesDirectory, "tiny-bf16-tied.fourier-paper.reference.json")));
        string directory = Calibrated(fixture.RootElement, FourierDimensionRule.PreRopeLayered, out var f);
        using var model = LlamaModel.Load(directory, TestModels.SmallOptions());
        var c = model.Config;
        int[] tokens = TestModels.Tokens(150, c.VocabSize, 6);
        CodecChecks.AssertAnyChunkingIsBitIdentical(model, FourierKvCache.CodecId, tokens, [[150], [1, 19, 1, 64, 65], [33, 100, 17]]);
        foreach (int at in (int[])[19, 21, 100])
        {
            CodecChecks.AssertSnapshotRoundTrip(model, FourierKvCache.CodecId, tokens, at);
        }

        CodecChecks.AssertDecodeStepAllocatesNothing(model, FourierKvCache.CodecId);
        CodecChecks.AssertSnapshotMovesToAnotherInstance(directory, TestModels.SmallOptions(), FourierKvCache.CodecId, tokens, 90);

        // 4 · [P · d · min(p, init + W) + (p > init + W ? 2 · kvHeads · Σ_l (2k · m_l + (d − m_l) · (p − init − W)) : 0)]
        int d = c.HeadDim, kv = c.NumKeyValueHeads, exact = f.InitTokens + f.Window, pieces = 2 * c.NumHiddenLayers * kv;
        int[] m = Enumerable.Range(0, c.NumHiddenLayers).Select(f.CompressedDimsOf).ToArray();
        using var cache = model.CreateCache(FourierKvCache.CodecId);
        Assert.Equal(4L * 2 * kv * m.Sum(ml => d - ml), cache.BytesPerToken);
        int position = 0;
        foreach (int p in (int[])[1, 20, 21, 22, 90, 150])
        {
            model.Forward(cache, tokens.AsSpan(position, p - position), new float[c.VocabSize]);
            position = p;
            long middle = Math.Max(0, p - exact);
            long formula = 4L * ((long)pieces * d * Math.Min(p, exact)
                + (middle > 0 ? 2L * kv * m.Sum(ml => 2L * f.Frequencies * ml + (d - ml) * middle) : 0));
            Assert.Equal(formula, cache.CacheBytes);
            Assert.Equal(formula, cache.StateLength);
            Assert.Equal(formula, model.CacheBytesAt(FourierKvCache.CodecId, p));
        }
    }

    /// <summary>A copy of tiny-bf16-tied calibrated with the fixture's options under <paramref name="rule"/>.</summary>
    private string Calibrated(JsonElement root, FourierDimensionRule rule, out FourierConfig config)
    {
        string directory = _models.Add(new TempModel(Directory.CreateTempSubdirectory("kvcache-fourier-paper-").FullName));
        foreach (string file in (string[])["config.json", "model.safetensors"])
        {
            File.Copy(Path.Combine(TestModels.FixturesDirectory, "tiny-bf16-tied", file), Path.Combine(directory, file));
        }

        int[] calibration = Ints(root.GetProperty("calibration"));
        config = FourierCalibrator.Calibrate(directory, new FourierCalibrationOptions
        {
            Rule = rule,
            DimsFraction = root.GetProperty("dims_fraction").GetDouble(),
            LayerSpread = root.GetProperty("layer_spread").GetDouble(),
            Frequencies = root.GetProperty("frequencies").GetInt32(),
            Window = root.GetProperty("window").GetInt32(),
            Horizon = root.GetProperty("horizon").GetInt32(),
            CalibrationTokens = calibration.Length,
            CalibrationIds = calibration,
            ComputeThreads = 2,
        });
        Assert.Equal(root.GetProperty("init_tokens").GetInt32(), config.InitTokens);
        return directory;
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(v => v.GetInt32()).ToArray();

    private static int[][][] Dims(JsonElement e) =>
        e.EnumerateArray().Select(l => l.EnumerateArray().Select(Ints).ToArray()).ToArray();
}
