namespace KvCache.GpuWorker.Tests;

/// <summary>
/// YOCO with its gated-retention self-decoder (gRet): the "yoco" codec's per-head d×d states beside the global K̂V̂.
/// Logits against PyTorch are in <see cref="PyTorchReferenceUnitTests"/> (tiny-yoco-gret), batching in
/// <see cref="BatchedForwardUnitTests"/>, bf16 caches in <see cref="KvCacheFormatUnitTests"/>.
/// </summary>
public sealed class YocoGatedRetentionUnitTests : IDisposable
{
    private static readonly ModelConfig Config = ModelConfig.Demo with
    {
        MaxPositionEmbeddings = 512,
        Yoco = TestModels.GatedRetention,
    };

    private readonly TempModel _model = TestModels.Generate(Config, seed: 22);

    public void Dispose() => _model.Dispose();

    /// <summary>Splits across the 64-token pass boundary and single tokens: crash replay re-runs a log in other chunks.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Chunked_prefill_and_token_by_token_decode_give_bit_identical_logits_and_states(int threads)
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions(threads));
        int[] tokens = TestModels.Tokens(150, model.Config.VocabSize, 5);
        CodecChecks.AssertAnyChunkingIsBitIdentical(model, YocoKvCache.CodecId, tokens,
            [[150], [1, 63, 1, 64, 21], [7, 33, 100, 10], [64, 64, 22], [2, 129, 19]]);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(10)]
    [InlineData(100)]
    public void Snapshot_restored_in_chunks_continues_with_identical_logits(int at)
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        CodecChecks.AssertSnapshotRoundTrip(model, YocoKvCache.CodecId, TestModels.Tokens(130, Config.VocabSize, 4), at);
    }

    [Fact]
    public void A_snapshot_resumes_in_another_loaded_instance_like_its_twin() =>
        CodecChecks.AssertSnapshotMovesToAnotherInstance(_model.Directory, TestModels.SmallOptions(), YocoKvCache.CodecId, TestModels.Tokens(120, Config.VocabSize, 11), 77);

    [Fact]
    public void Cache_bytes_are_the_global_cache_plus_a_constant_state_per_head()
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        using var cache = model.CreateCache(YocoKvCache.CodecId);
        var c = model.Config;
        long perToken = 2L * c.NumKeyValueHeads * c.HeadDim * 4;
        long states = c.NumHiddenLayers / 2 * (long)c.NumAttentionHeads * c.HeadDim * c.HeadDim * 4;
        Assert.Equal(perToken, cache.BytesPerToken);
        Assert.Equal(0, model.CacheBytesAt(YocoKvCache.CodecId, 0));
        var logits = new float[c.VocabSize];
        int[] tokens = TestModels.Tokens(200, c.VocabSize, 8);
        int at = 0;
        foreach (int n in (int[])[1, 9, 14, 1, 75, 100])
        {
            model.Forward(cache, tokens.AsSpan(at, n), logits);
            at += n;
            long formula = at * perToken + states;
            Assert.Equal(formula, cache.CacheBytes);
            Assert.Equal(formula, cache.StateLength);
            Assert.Equal(formula, model.CacheBytesAt(YocoKvCache.CodecId, at));
            Assert.Equal(formula, YocoKvCache.BytesAt(c, at));
        }

        // The states are f32 whatever the cache format: only the global K̂V̂ halves in bf16.
        Assert.Equal(100 * perToken / 2 + states, YocoKvCache.BytesAt(c, 100, KvCacheFormat.Bf16));
    }

    [Fact]
    public void A_decode_step_allocates_no_managed_memory()
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        CodecChecks.AssertDecodeStepAllocatesNothing(model, YocoKvCache.CodecId);
    }

    [Fact]
    public void Exhausted_pool_throws_and_leaves_the_cache_unchanged()
    {
        // A block of 16 tokens (2 KV heads of 32) holds 64 state rows of 32 floats: each layer's 4 heads x 32 rows take 2.
        long blockBytes = 16L * 2 * Config.NumKeyValueHeads * Config.HeadDim * 4;
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions(budget: 7 * blockBytes, blockTokens: 16));
        int[] tokens = TestModels.Tokens(60, Config.VocabSize, 1);
        var logits = new float[Config.VocabSize];
        var a = model.CreateCache(YocoKvCache.CodecId);
        model.Forward(a, tokens.AsSpan(0, 40), logits); // 4 state + 3 K̂V̂ blocks
        Assert.Equal(0, model.CacheBytesFree);
        using var b = model.CreateCache(YocoKvCache.CodecId);
        Assert.Throws<CacheCapacityException>(() => model.Forward(b, tokens.AsSpan(0, 1), logits));
        Assert.Equal(0, b.CacheBytes);
        CodecChecks.AssertRefusedAppendChangesNothing(model, a, tokens, logits);
        a.Dispose();
        Assert.Equal(model.CacheBytesTotal, model.CacheBytesFree);
    }

    [Fact]
    public void A_state_block_returned_dirty_starts_the_next_session_from_zero()
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        int[] tokens = TestModels.Tokens(50, Config.VocabSize, 9);
        var first = new float[Config.VocabSize];
        var again = new float[Config.VocabSize];
        using (var fresh = model.CreateCache(YocoKvCache.CodecId))
        {
            model.Forward(fresh, tokens, first);
        }

        using var dirty = model.CreateCache(YocoKvCache.CodecId);
        model.Forward(dirty, tokens, again);
        Assert.Equal(first, again);
    }

    [Fact]
    public void Config_json_names_the_self_decoder_and_bad_settings_are_refused()
    {
        string json = Config.ToJson();
        Assert.Contains("\"self_decoder\": \"gated_retention\"", json);
        Assert.DoesNotContain("sliding_window", json);
        Assert.Equal(Config, ModelConfig.FromJson(json));
        Assert.Equal(Config with { Yoco = Config.Yoco! with { GateLogitNormalizer = 8 } },
            ModelConfig.FromJson(json.Replace("\"gate_logit_normalizer\": 16", "\"gate_logit_normalizer\": 8")));
        Assert.Equal(Config, ModelConfig.FromJson(json.Replace(",\n  \"gate_logit_normalizer\": 16", "")));

        // A sliding-window model's config.json is what it was before gated retention (its fingerprint is unchanged).
        var window = Config with { Yoco = new YocoConfig { SlidingWindow = 24 } };
        Assert.DoesNotContain("self_decoder", window.ToJson());
        Assert.Equal(window, ModelConfig.FromJson(window.ToJson().Replace("\"sliding_window\": 24", "\"sliding_window\": 24, \"self_decoder\": \"sliding_window\"")));

        Assert.Throws<NotSupportedException>(() => ModelConfig.FromJson(json.Replace("gated_retention", "mamba")));
        Assert.Throws<FormatException>(() => ModelConfig.FromJson(json.Replace("\"gated_retention\"", "3")));
        Assert.Throws<ArgumentException>(() => (Config with { Yoco = Config.Yoco! with { GateLogitNormalizer = 0 } }).Validate());
        Assert.Throws<ArgumentException>(() => (Config with { Yoco = Config.Yoco! with { SlidingWindow = 16 } }).Validate());
    }

    [Fact]
    public void The_model_counts_its_retention_weights()
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        var c = model.Config;
        long h = c.HiddenSize, q = c.QueryDim, mlp = 3 * h * c.IntermediateSize;
        long self = 2 * h + 5 * h * q + h * c.NumAttentionHeads + mlp; // q, k, v, g, o projections and the decay gate
        long cross = 2 * h + 2 * h * q + mlp;
        long expected = (long)c.VocabSize * h * 2 + h + c.NumHiddenLayers / 2 * (self + cross) + h + 2 * h * c.KeyValueDim;
        Assert.Equal(expected, model.ParameterCount);
        Assert.Equal([YocoKvCache.CodecId], model.Codecs);
    }
}
