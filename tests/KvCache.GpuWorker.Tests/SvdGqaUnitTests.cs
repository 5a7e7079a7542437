using System.Text.Json;
using Xunit.Abstractions;

namespace KvCache.GpuWorker.Tests;

/// <summary>One generated multi-head model (4 KV heads, so there are heads to compress) and its conversions.</summary>
public sealed class SvdGqaModels : IDisposable
{
    public static readonly ModelConfig Source = new()
    {
        VocabSize = 256,
        HiddenSize = 64,
        IntermediateSize = 128,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 4,
        HeadDim = 16,
        MaxPositionEmbeddings = 256,
    };

    private readonly DirectoryInfo _root = System.IO.Directory.CreateTempSubdirectory("kvcache-svdgqa-");

    public SvdGqaModels()
    {
        ModelGenerator.Write(SourceDirectory, Source, seed: 21);
        Conversions = new Dictionary<string, SvdGqaConversion>
        {
            ["exact-t2"] = Convert("exact-t2", new SvdGqaOptions { Ratio = 1, GroupSize = 2 }),
            ["half"] = Convert("half", new SvdGqaOptions { Ratio = 0.5 }),
            ["quarter"] = Convert("quarter", new SvdGqaOptions { Ratio = 0.25 }),
        };
    }

    public string SourceDirectory => Path.Combine(_root.FullName, "source");

    public IReadOnlyDictionary<string, SvdGqaConversion> Conversions { get; }

    public string Directory(string name) => Path.Combine(_root.FullName, name);

    public SvdGqaConversion Convert(string name, SvdGqaOptions options, string? source = null) =>
        SvdGqaConverter.Convert(source ?? SourceDirectory, Directory(name), options with { CalibrationTokens = 300, SequenceLength = 128, ComputeThreads = 2 });

    public void Dispose()
    {
        try
        {
            _root.Delete(recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a leftover temp directory is harmless.
        }
    }
}

public sealed class SvdGqaUnitTests(SvdGqaModels models, ITestOutputHelper output) : IClassFixture<SvdGqaModels>
{
    private const float ExactTolerance = 1e-4f;

    [Fact]
    public void Conversions_record_their_plan_in_config_json()
    {
        var expected = new (string Name, double Ratio, int Group, int Rank)[] { ("exact-t2", 1, 2, 32), ("half", 0.5, 2, 16), ("quarter", 0.25, 4, 16) };
        foreach (var (name, ratio, group, rank) in expected)
        {
            var config = ModelConfig.Load(Path.Combine(models.Directory(name), "config.json"));
            Assert.Equal(models.Conversions[name].Config, config);
            Assert.Equal(new SvdGqaConfig { Ratio = ratio, GroupSize = group, Rank = rank, CalibrationTokens = 300, CalibrationSeed = 1 }, config.SvdGqa);
            Assert.Equal(SvdGqaModels.Source with { SvdGqa = config.SvdGqa }, config);
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(models.Directory(name), "config.json")));
            Assert.Equal("svd-gqa", json.RootElement.GetProperty("kv_compression").GetProperty("method").GetString());
        }

        // Full rank keeps all the calibration energy; rank d of n keeps less, but at least d / n (top eigenvalues).
        Assert.All(models.Conversions["exact-t2"].KeyEnergyKept.Concat(models.Conversions["exact-t2"].ValueEnergyKept), e => Assert.Equal(1, e, 9));
        foreach (string name in (string[])["half", "quarter"])
        {
            var c = models.Conversions[name];
            output.WriteLine($"{name}: key energy kept per layer [{string.Join(", ", c.KeyEnergyKept.Select(e => e.ToString("F3")))}], value [{string.Join(", ", c.ValueEnergyKept.Select(e => e.ToString("F3")))}]");
            double floor = c.Config.SvdGqa!.Ratio - 1e-12;
            Assert.All(c.KeyEnergyKept.Concat(c.ValueEnergyKept), e => Assert.InRange(e, floor, 1 - 1e-6));
        }
    }

    [Theory]
    [InlineData("exact-t2")]
    [InlineData("exact-t4")]
    public void At_full_rank_the_converted_model_matches_the_original(string name)
    {
        string directory = name == "exact-t2" ? models.Directory(name) : ConvertOnce(name, new SvdGqaOptions { Ratio = 1, GroupSize = 4 });
        using var original = LlamaModel.Load(models.SourceDirectory, TestModels.SmallOptions());
        using var converted = LlamaModel.Load(directory, TestModels.SmallOptions());
        float worst = MaxLogitError(original, "full", converted, "svd-gqa", TestModels.Tokens(150, SvdGqaModels.Source.VocabSize, 3));
        output.WriteLine($"{name}: worst max-abs logit error vs the original = {worst:E2}");
        Assert.True(worst <= ExactTolerance, $"max abs logit error {worst} > {ExactTolerance}");
    }

    [Fact]
    public void Full_rank_conversion_of_the_gqa_fixture_matches_the_pytorch_reference()
    {
        // tiny-f32 has 2 query heads per KV head, so this also checks the query-head → group mapping.
        string directory = ConvertOnce("tiny-f32-exact", new SvdGqaOptions { Ratio = 1, GroupSize = 2 }, Path.Combine(TestModels.FixturesDirectory, "tiny-f32"));
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestModels.FixturesDirectory, "tiny-f32.reference.json")));
        var root = fixture.RootElement;
        int[] prompt = root.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] greedy = root.GetProperty("greedy").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        float[][] expected = root.GetProperty("logits").EnumerateArray().Select(r => r.EnumerateArray().Select(e => e.GetSingle()).ToArray()).ToArray();

        using var model = LlamaModel.Load(directory, TestModels.SmallOptions());
        using var cache = model.CreateCache("svd-gqa");
        var logits = new float[model.Config.VocabSize];
        model.Forward(cache, prompt, logits);
        float worst = 0;
        for (int step = 0; step < expected.Length; step++)
        {
            for (int i = 0; i < logits.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(logits[i] - expected[step][i]));
            }

            if (step < expected.Length - 1)
            {
                model.Forward(cache, [greedy[step]], logits);
            }
        }

        output.WriteLine($"tiny-f32 svd-gqa ratio 1: worst max-abs logit error vs PyTorch = {worst:E2}");
        Assert.True(worst <= ExactTolerance, $"max abs logit error {worst} > {ExactTolerance}");
    }

    [Theory]
    [InlineData("half")]
    [InlineData("quarter")]
    public void Below_full_rank_logits_stay_finite_and_top1_agreement_is_recorded(string name)
    {
        using var original = LlamaModel.Load(models.SourceDirectory, TestModels.SmallOptions());
        using var converted = LlamaModel.Load(models.Directory(name), TestModels.SmallOptions());
        int[] tokens = TestModels.Tokens(200, SvdGqaModels.Source.VocabSize, 8);
        using var full = original.CreateCache("full");
        using var compressed = converted.CreateCache("svd-gqa");
        var a = new float[original.Config.VocabSize];
        var b = new float[original.Config.VocabSize];
        int agree = 0;
        float worst = 0;
        for (int i = 0; i < tokens.Length; i++)
        {
            original.Forward(full, tokens.AsSpan(i, 1), a);
            converted.Forward(compressed, tokens.AsSpan(i, 1), b);
            Assert.All(b, v => Assert.True(float.IsFinite(v)));
            agree += TestModels.ArgMax(a) == TestModels.ArgMax(b) ? 1 : 0;
            worst = Math.Max(worst, a.Zip(b, (x, y) => Math.Abs(x - y)).Max());
        }

        output.WriteLine($"svd-gqa {name} (ratio {converted.Config.SvdGqa!.Ratio}): top-1 agreement with full {agree}/{tokens.Length} = {agree / (double)tokens.Length:P1}, worst max-abs logit difference {worst:F3}");
        Assert.True(worst > ExactTolerance, "a truncated basis cannot be exact on random weights");
    }

    [Fact]
    public void Any_chunking_gives_bit_identical_svd_gqa_state_and_logits()
    {
        using var model = LlamaModel.Load(models.Directory("half"), TestModels.SmallOptions());
        int[] tokens = TestModels.Tokens(150, model.Config.VocabSize, 5);
        var single = Run(model, tokens, Enumerable.Repeat(1, tokens.Length).ToArray());
        foreach (int[] split in (int[][])[[150], [1, 63, 1, 64, 21], [7, 33, 100, 10], [2, 129, 19]])
        {
            var chunked = Run(model, tokens, split);
            Assert.Equal(single.State, chunked.State);
            Assert.Equal(single.Logits, chunked.Logits);
        }
    }

    [Fact]
    public void Snapshot_restored_into_a_fresh_cache_continues_with_identical_logits()
    {
        using var model = LlamaModel.Load(models.Directory("quarter"), TestModels.SmallOptions());
        int[] tokens = TestModels.Tokens(120, model.Config.VocabSize, 4);
        using var source = model.CreateCache("svd-gqa");
        var logits = new float[model.Config.VocabSize];
        model.Forward(source, tokens.AsSpan(0, 90), logits);
        byte[] state = new byte[source.StateLength];
        for (int offset = 0; offset < state.Length; offset += 1000)
        {
            source.ReadState(offset, state.AsSpan(offset, Math.Min(1000, state.Length - offset)));
        }

        using var restored = model.CreateCache("svd-gqa");
        restored.BeginRestore(90);
        for (int offset = 0; offset < state.Length; offset += 333)
        {
            restored.WriteState(offset, state.AsSpan(offset, Math.Min(333, state.Length - offset)));
        }

        var expected = new float[model.Config.VocabSize];
        var actual = new float[model.Config.VocabSize];
        model.Forward(source, tokens.AsSpan(90), expected);
        model.Forward(restored, tokens.AsSpan(90), actual);
        Assert.Equal(expected, actual);
        Assert.Equal(CodecChecks.ReadState(source), CodecChecks.ReadState(restored));
    }

    [Theory]
    [InlineData("exact-t2", 32)]
    [InlineData("half", 16)]
    [InlineData("quarter", 16)]
    public void Cache_bytes_equal_the_formula_and_the_ratio_of_full(string name, int rank)
    {
        using var original = LlamaModel.Load(models.SourceDirectory, TestModels.SmallOptions());
        using var model = LlamaModel.Load(models.Directory(name), TestModels.SmallOptions());
        var c = model.Config;
        var svd = c.SvdGqa!;
        Assert.Equal(rank, svd.Rank);

        // 2 (c and v') · layers · (KV heads / t) groups · d floats · 4 bytes.
        long formula = 2L * c.NumHiddenLayers * (c.NumKeyValueHeads / svd.GroupSize) * svd.Rank * sizeof(float);
        Assert.Equal(formula, SvdGqaKvCache.BytesPerTokenFor(c));
        Assert.Equal((long)Math.Round(svd.Ratio * FullKvCache.BytesPerTokenFor(original.Config)), formula);

        using var cache = model.CreateCache("svd-gqa");
        var logits = new float[c.VocabSize];
        model.Forward(cache, TestModels.Tokens(37, c.VocabSize, 1), logits);
        Assert.Equal(formula, cache.BytesPerToken);
        Assert.Equal(37 * formula, cache.CacheBytes);
        Assert.Equal(37 * formula, cache.StateLength);
        Assert.Equal(37 * formula, CodecChecks.ReadState(cache).Length);
        Assert.Equal(37 * formula, model.CacheBytesAt("svd-gqa", 37));
    }

    [Fact]
    public void The_converted_model_has_its_own_identity_codec_and_parameters()
    {
        using var original = LlamaModel.Load(models.SourceDirectory, TestModels.SmallOptions());
        using var half = LlamaModel.Load(models.Directory("half"), TestModels.SmallOptions());
        using var quarter = LlamaModel.Load(models.Directory("quarter"), TestModels.SmallOptions());

        Assert.Equal("half", half.Id);
        Assert.NotEqual(original.Fingerprint, half.Fingerprint);
        Assert.NotEqual(half.Fingerprint, quarter.Fingerprint);
        Assert.Equal(["svd-gqa"], half.Codecs);
        Assert.Equal(["full", "fourier"], original.Codecs);

        // Distinct codec ids: the silo refuses a snapshot whose codec differs from the session's.
        using var compressed = half.CreateCache("svd-gqa");
        using var full = original.CreateCache("full");
        Assert.Equal("svd-gqa", compressed.Codec);
        Assert.NotEqual(full.Codec, compressed.Codec);
        Assert.Throws<ArgumentException>(() => half.CreateCache("full"));
        Assert.Throws<ArgumentException>(() => half.CacheBytesAt("full", 1));
        Assert.Throws<ArgumentException>(() => original.Forward(compressed, [1], new float[256]));

        using var reader = SafetensorsReader.Open(Path.Combine(models.Directory("half"), "model.safetensors"));
        Assert.Equal(half.ParameterCount, reader.Tensors.Values.Sum(t => t.ElementCount));
        // Ratio ½: groups of t = 2 heads, d = 16: 2 groups · 16 rows of 2 · 16 key dims; o_proj takes 4 heads · 16.
        Assert.Equal(new[] { 32, 32 }, reader.Tensors["model.layers.0.self_attn.k_basis.weight"].Shape);
        Assert.Equal(new[] { 32, 64 }, reader.Tensors["model.layers.0.self_attn.v_proj.weight"].Shape);
        Assert.Equal(new[] { 64, 64 }, reader.Tensors["model.layers.0.self_attn.o_proj.weight"].Shape);
    }

    [Fact]
    public void A_decode_step_on_the_svd_gqa_cache_allocates_no_managed_memory()
    {
        using var model = LlamaModel.Load(models.Directory("half"), TestModels.SmallOptions());
        CodecChecks.AssertDecodeStepAllocatesNothing(model, "svd-gqa");
    }

    [Fact]
    public void Without_a_group_size_the_valid_one_nearest_to_the_inverse_ratio_is_chosen_and_a_bad_one_lists_the_valid_ones()
    {
        // 6 KV heads: round(1 / 0.25) = 4 does not divide them.
        var source = models.Directory("six-heads");
        ModelGenerator.Write(source, SvdGqaModels.Source with { HiddenSize = 96, NumAttentionHeads = 6, NumKeyValueHeads = 6 }, seed: 5);

        var svd = models.Convert("six-heads-quarter", new SvdGqaOptions { Ratio = 0.25 }, source).Config.SvdGqa!;

        Assert.Equal((3, 12), (svd.GroupSize, svd.Rank));
        var refused = Assert.Throws<ArgumentException>(() => models.Convert("six-heads-t4", new SvdGqaOptions { Ratio = 0.25, GroupSize = 4 }, source));
        Assert.Contains("valid group sizes: 1, 2, 3, 6", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Impossible_plans_and_reconversion_are_refused()
    {
        Assert.Throws<ArgumentException>(() => models.Convert("bad-ratio", new SvdGqaOptions { Ratio = 0.3 }));
        Assert.Throws<ArgumentException>(() => models.Convert("bad-group", new SvdGqaOptions { Ratio = 1, GroupSize = 3 }));
        Assert.Throws<ArgumentException>(() => models.Convert("zero", new SvdGqaOptions { Ratio = 0 }));
        Assert.Throws<NotSupportedException>(() => models.Convert("again", new SvdGqaOptions(), models.Directory("half")));
        Assert.Throws<ArgumentException>(() => SvdGqaConverter.Convert(models.SourceDirectory, models.SourceDirectory, new SvdGqaOptions()));

        string json = SvdGqaModels.Source.ToJson();
        Assert.Throws<NotSupportedException>(() => ModelConfig.FromJson(json.Replace("\"mlp_bias\": false", "\"mlp_bias\": false, \"kv_compression\": {\"method\": \"other\"}")));
        Assert.Throws<ArgumentException>(() => ModelConfig.FromJson(json.Replace("\"mlp_bias\": false",
            "\"mlp_bias\": false, \"kv_compression\": {\"method\": \"svd-gqa\", \"ratio\": 0.5, \"group_size\": 2, \"rank\": 8}")));
    }

    [Fact]
    public void Conversion_is_deterministic()
    {
        string again = ConvertOnce("half-again", new SvdGqaOptions { Ratio = 0.5 });
        foreach (string file in (string[])["config.json", "model.safetensors"])
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(models.Directory("half"), file)), File.ReadAllBytes(Path.Combine(again, file)));
        }
    }

    private string ConvertOnce(string name, SvdGqaOptions options, string? source = null)
    {
        lock (models)
        {
            if (!File.Exists(Path.Combine(models.Directory(name), "config.json")))
            {
                models.Convert(name, options, source);
            }
        }

        return models.Directory(name);
    }

    private static float MaxLogitError(LlamaModel a, string codecA, LlamaModel b, string codecB, int[] tokens)
    {
        using var cacheA = a.CreateCache(codecA);
        using var cacheB = b.CreateCache(codecB);
        var la = new float[a.Config.VocabSize];
        var lb = new float[b.Config.VocabSize];
        float worst = 0;

        // Prefill most of it, then step token by token: both paths must match.
        int prefill = tokens.Length - 20;
        for (int at = 0; at < tokens.Length; at += at < prefill ? prefill : 1)
        {
            int n = at < prefill ? prefill : 1;
            a.Forward(cacheA, tokens.AsSpan(at, n), la);
            b.Forward(cacheB, tokens.AsSpan(at, n), lb);
            worst = Math.Max(worst, la.Zip(lb, (x, y) => Math.Abs(x - y)).Max());
        }

        return worst;
    }

    private static (byte[] State, float[] Logits) Run(LlamaModel model, int[] tokens, int[] split)
    {
        using var cache = model.CreateCache("svd-gqa");
        var logits = new float[model.Config.VocabSize];
        int at = 0;
        foreach (int n in split)
        {
            model.Forward(cache, tokens.AsSpan(at, n), logits);
            at += n;
        }

        return (CodecChecks.ReadState(cache), logits);
    }
}
