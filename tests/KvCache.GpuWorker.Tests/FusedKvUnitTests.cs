using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker.Tests;

/// <summary>The FusedKV and FusedKV-Lite architectures and their codecs "fusedkv" / "fusedkv-lite".</summary>
public sealed class FusedKvUnitTests : IDisposable
{
    private static readonly ModelConfig Config = ModelConfig.Demo with { MaxPositionEmbeddings = 512, FusedKv = new FusedKvConfig() };

    private static readonly ModelConfig LiteConfig = Config with { FusedKv = new FusedKvConfig { Lite = true } };

    private readonly TempModel _fused = TestModels.Generate(Config, seed: 31);
    private readonly TempModel _lite = TestModels.Generate(LiteConfig, seed: 32);

    public void Dispose()
    {
        _fused.Dispose();
        _lite.Dispose();
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 2)]
    [InlineData(true, 2)]
    public void Any_chunking_gives_bit_identical_logits_and_cache(bool lite, int threads)
    {
        using var model = LlamaModel.Load(Directory(lite), TestModels.SmallOptions(threads));
        int[] tokens = TestModels.Tokens(150, model.Config.VocabSize, 5);
        CodecChecks.AssertAnyChunkingIsBitIdentical(model, model.Codecs[0], tokens, [[150], [1, 63, 1, 64, 21], [7, 33, 100, 10], [2, 129, 19]]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Snapshot_restored_in_chunks_continues_with_identical_logits(bool lite)
    {
        using var model = LlamaModel.Load(Directory(lite), TestModels.SmallOptions());
        CodecChecks.AssertSnapshotRoundTrip(model, model.Codecs[0], TestModels.Tokens(120, model.Config.VocabSize, 4), 100);
    }

    [Theory]
    [InlineData(false, FusedKvCache.CodecId)]
    [InlineData(true, FusedKvCache.LiteCodecId)]
    public void Cache_bytes_are_half_of_the_full_cache(bool lite, string codec)
    {
        using var model = LlamaModel.Load(Directory(lite), TestModels.SmallOptions());
        Assert.Equal([codec], model.Codecs);
        var c = model.Config;
        long half = 2L * (c.NumHiddenLayers / 2) * c.NumKeyValueHeads * c.HeadDim * 4;
        Assert.Equal(half, FusedKvCache.BytesPerTokenFor(c));
        Assert.Equal(FullKvCache.BytesPerTokenFor(ModelConfig.Demo), 2 * half);
        using var cache = model.CreateCache(codec);
        Assert.Equal(half, cache.BytesPerToken);
        var logits = new float[c.VocabSize];
        int[] tokens = TestModels.Tokens(100, c.VocabSize, 3);
        int at = 0;
        foreach (int n in (int[])[1, 16, 83])
        {
            model.Forward(cache, tokens.AsSpan(at, n), logits);
            at += n;
            Assert.Equal(at * half, cache.CacheBytes);
            Assert.Equal(at * half, cache.StateLength);
            Assert.Equal(at * half, model.CacheBytesAt(codec, at));
        }

        Assert.Throws<ArgumentException>(() => model.CreateCache(FullKvCache.CodecId));
        Assert.Throws<ArgumentException>(() => model.CreateCache(lite ? FusedKvCache.CodecId : FusedKvCache.LiteCodecId));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_decode_step_allocates_no_managed_memory(bool lite)
    {
        using var model = LlamaModel.Load(Directory(lite), TestModels.SmallOptions());
        CodecChecks.AssertDecodeStepAllocatesNothing(model, model.Codecs[0]);
    }

    [Fact]
    public void Exhausted_pool_throws_and_leaves_the_cache_unchanged()
    {
        long bytesPerToken = FusedKvCache.BytesPerTokenFor(Config);
        using var model = LlamaModel.Load(_fused.Directory, TestModels.SmallOptions(budget: 3 * 16 * bytesPerToken, blockTokens: 16));
        int[] tokens = TestModels.Tokens(60, Config.VocabSize, 1);
        var logits = new float[Config.VocabSize];
        using var a = model.CreateCache(FusedKvCache.CodecId);
        model.Forward(a, tokens.AsSpan(0, 40), logits);
        CodecChecks.AssertRefusedAppendChangesNothing(model, a, tokens, logits);
    }

    [Fact]
    public void Fusion_layers_have_no_kv_projections_and_parameters_are_counted()
    {
        var names = LlamaTensors.List(Config).Select(t => t.Name).ToHashSet();
        Assert.Contains("model.layers.1.self_attn.k_proj.weight", names);
        Assert.DoesNotContain("model.layers.2.self_attn.k_proj.weight", names);
        Assert.Contains("model.layers.3.self_attn.k_fusion.weight", names);
        Assert.DoesNotContain("model.layers.3.self_attn.k_fusion.weight", LlamaTensors.List(LiteConfig).Select(t => t.Name));

        using var model = LlamaModel.Load(_fused.Directory, TestModels.SmallOptions());
        var c = model.Config;
        long h = c.HiddenSize, layer = 2 * h + 2 * h * c.QueryDim + 3 * h * c.IntermediateSize;
        long expected = 2L * c.VocabSize * h + h + c.NumHiddenLayers * layer
            + c.NumHiddenLayers / 2 * (2 * h * c.KeyValueDim + 4L * c.KeyValueDim);
        Assert.Equal(expected, model.ParameterCount);
    }

    [Fact]
    public void Key_fusion_weights_that_differ_within_a_rope_pair_are_refused()
    {
        using var temp = TestModels.Generate(Config, seed: 33);
        string path = Path.Combine(temp.Directory, "model.safetensors");
        var tensors = LlamaTensors.List(Config);
        var specs = tensors.Select(t => new SafetensorsTensorSpec(t.Name, TensorDtype.F32, t.Shape)).ToList();
        using (var reader = SafetensorsReader.Open(path))
        using (var writer = new SafetensorsWriter(path + ".new", specs))
        {
            foreach (var t in tensors)
            {
                var values = new float[t.ElementCount];
                reader.ReadAsSingle(t.Name, values);
                if (t.Name == "model.layers.2.self_attn.k_fusion.weight")
                {
                    values[1] += 0.125f;
                }

                writer.Write(values);
            }

            writer.Complete();
        }

        File.Move(path + ".new", path, overwrite: true);
        var e = Assert.Throws<InvalidDataException>(() => LlamaModel.Load(temp.Directory, TestModels.SmallOptions()));
        Assert.Contains("k_fusion", e.Message);
    }

    [Fact]
    public void Config_json_round_trips_and_odd_layer_counts_are_refused()
    {
        Assert.Equal(Config, ModelConfig.FromJson(Config.ToJson()));
        Assert.Equal(LiteConfig, ModelConfig.FromJson(LiteConfig.ToJson()));
        Assert.Contains("\"FusedKvForCausalLM\"", LiteConfig.ToJson());
        Assert.Throws<ArgumentException>(() => (Config with { NumHiddenLayers = 5 }).Validate());
        Assert.Throws<FormatException>(() => ModelConfig.FromJson(Config.ToJson().Replace("\"fusedkv_lite\": false", "\"fusedkv_lite\": 1")));
    }

    private string Directory(bool lite) => lite ? _lite.Directory : _fused.Directory;
}
