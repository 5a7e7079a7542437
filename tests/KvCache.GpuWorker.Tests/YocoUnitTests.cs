namespace KvCache.GpuWorker.Tests;

/// <summary>The YOCO architecture and its "yoco" codec (ring buffers + global K̂V̂).</summary>
public sealed class YocoUnitTests : IDisposable
{
    // Window 24 over blocks of 16: a ring spans two blocks, one partly used, and 150 tokens wrap it several times.
    private const int Window = 24;

    private static readonly ModelConfig Config = ModelConfig.Demo with
    {
        MaxPositionEmbeddings = 512,
        Yoco = new YocoConfig { SlidingWindow = Window },
    };

    private readonly TempModel _model = TestModels.Generate(Config, seed: 21);

    public void Dispose() => _model.Dispose();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Any_chunking_gives_bit_identical_logits_and_cache_while_the_rings_wrap(int threads)
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions(threads));
        int[] tokens = TestModels.Tokens(150, model.Config.VocabSize, 5);
        CodecChecks.AssertAnyChunkingIsBitIdentical(model, YocoKvCache.CodecId, tokens,
            [[150], [1, 63, 1, 64, 21], [7, 33, 100, 10], [23, 1, 24, 25, 77], [2, 129, 19]]);
    }

    [Theory]
    [InlineData(10)]
    [InlineData(Window)]
    [InlineData(100)]
    public void Snapshot_restored_in_chunks_continues_with_identical_logits(int at)
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        CodecChecks.AssertSnapshotRoundTrip(model, YocoKvCache.CodecId, TestModels.Tokens(130, Config.VocabSize, 4), at);
    }

    [Fact]
    public void Cache_bytes_equal_the_formula_below_and_above_the_window()
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        using var cache = model.CreateCache(YocoKvCache.CodecId);
        var c = model.Config;
        long perToken = 2L * c.NumKeyValueHeads * c.HeadDim * 4;
        long rings = c.NumHiddenLayers / 2 * 2L * Window * c.NumKeyValueHeads * c.HeadDim * 4;
        Assert.Equal(perToken, cache.BytesPerToken);
        Assert.Equal(0, cache.CacheBytes);
        Assert.Equal(0, model.CacheBytesAt(YocoKvCache.CodecId, 0));
        var logits = new float[c.VocabSize];
        int[] tokens = TestModels.Tokens(200, c.VocabSize, 8);
        int at = 0;
        foreach (int n in (int[])[1, 9, Window - 10, 1, 75, 100])
        {
            model.Forward(cache, tokens.AsSpan(at, n), logits);
            at += n;
            long formula = 2L * at * c.NumKeyValueHeads * c.HeadDim * 4 + rings;
            Assert.Equal(formula, cache.CacheBytes);
            Assert.Equal(formula, cache.StateLength);
            Assert.Equal(formula, model.CacheBytesAt(YocoKvCache.CodecId, at));
            Assert.Equal(formula, YocoKvCache.BytesAt(c, at));
        }

        // Past the window only the global K̂V̂ grows: constant ring term.
        Assert.Equal(perToken * 100, model.CacheBytesAt(YocoKvCache.CodecId, 200) - model.CacheBytesAt(YocoKvCache.CodecId, 100));
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
        // Blocks of 16 tokens: rings take 2 layers x 2 blocks with the first token, K̂V̂ one block per 16 tokens.
        long blockBytes = 16L * 2 * Config.NumKeyValueHeads * Config.HeadDim * 4;
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions(budget: 7 * blockBytes, blockTokens: 16));
        Assert.Equal(7 * blockBytes, model.CacheBytesTotal);
        int[] tokens = TestModels.Tokens(60, Config.VocabSize, 1);
        var logits = new float[Config.VocabSize];

        var a = model.CreateCache(YocoKvCache.CodecId);
        model.Forward(a, tokens.AsSpan(0, 40), logits); // 4 ring + 3 K̂V̂ blocks
        Assert.Equal(0, model.CacheBytesFree);
        using var b = model.CreateCache(YocoKvCache.CodecId);
        Assert.Throws<CacheCapacityException>(() => model.Forward(b, tokens.AsSpan(0, 1), logits));
        Assert.Equal(0, b.Position);
        Assert.Equal(0, b.CacheBytes);
        Assert.Throws<CacheCapacityException>(() => b.BeginRestore(1));

        CodecChecks.AssertRefusedAppendChangesNothing(model, a, tokens, logits);

        a.Dispose();
        Assert.Equal(model.CacheBytesTotal, model.CacheBytesFree);
        model.Forward(b, tokens.AsSpan(0, 16), logits); // 4 ring + 1 K̂V̂ blocks
        Assert.Equal(2 * blockBytes, model.CacheBytesFree);

        // Room for a K̂V̂ block but not for the rings: nothing is taken.
        using var c = model.CreateCache(YocoKvCache.CodecId);
        Assert.Throws<CacheCapacityException>(() => model.Forward(c, tokens.AsSpan(0, 1), logits));
        Assert.Equal(0, c.Position);
        Assert.Equal(2 * blockBytes, model.CacheBytesFree);
        model.Forward(b, tokens.AsSpan(16, 32), logits);
        Assert.Equal(48, b.Position);
        Assert.Equal(0, model.CacheBytesFree);
    }

    [Fact]
    public void The_model_offers_only_the_yoco_codec_and_counts_its_parameters()
    {
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        Assert.Equal([YocoKvCache.CodecId], model.Codecs);
        Assert.Throws<ArgumentException>(() => model.CreateCache(FullKvCache.CodecId));
        Assert.Throws<ArgumentException>(() => model.CacheBytesAt(FullKvCache.CodecId, 1));
        var c = model.Config;
        long h = c.HiddenSize, layer = 2 * h + 2 * h * c.QueryDim + 3 * h * c.IntermediateSize;
        long expected = 2L * c.VocabSize * h + h + c.NumHiddenLayers * layer
            + c.NumHiddenLayers / 2 * 2 * h * c.KeyValueDim + h + 2 * h * c.KeyValueDim;
        Assert.Equal(expected, model.ParameterCount);

        using var plain = TestModels.Generate(ModelConfig.Demo with { MaxPositionEmbeddings = 512 });
        using var llama = LlamaModel.Load(plain.Directory, TestModels.SmallOptions());
        using var foreign = model.CreateCache(YocoKvCache.CodecId);
        Assert.Throws<ArgumentException>(() => llama.Forward(foreign, [1], new float[c.VocabSize]));
    }

    [Fact]
    public void Config_json_round_trips_and_bad_shapes_are_refused()
    {
        var parsed = ModelConfig.FromJson(Config.ToJson());
        Assert.Equal(Config, parsed);
        Assert.Contains("\"YocoForCausalLM\"", Config.ToJson());
        Assert.Throws<ArgumentException>(() => (Config with { NumHiddenLayers = 3 }).Validate());
        Assert.Throws<ArgumentException>(() => (Config with { Yoco = new YocoConfig { SlidingWindow = 0 } }).Validate());
        Assert.Throws<ArgumentException>(() => (Config with { Yoco = new YocoConfig { SlidingWindow = 513 } }).Validate());
        Assert.Throws<ArgumentException>(() => (Config with { FusedKv = new FusedKvConfig() }).Validate());
        Assert.Throws<FormatException>(() => ModelConfig.FromJson(Config.ToJson().Replace("\"sliding_window\": 24", "\"sliding_window\": null")));
    }
}
