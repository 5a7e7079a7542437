using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker.Tests;

public sealed class LlamaModelUnitTests : IDisposable
{
    private readonly TempModel _demo = TestModels.Generate(ModelConfig.Demo with { MaxPositionEmbeddings = 512 }, seed: 3);

    public void Dispose() => _demo.Dispose();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Any_chunking_gives_bit_identical_logits_and_cache(int threads)
    {
        using var model = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions(threads));
        int[] tokens = TestModels.Tokens(150, model.Config.VocabSize, 5);
        CodecChecks.AssertAnyChunkingIsBitIdentical(model, "full", tokens, [[150], [1, 63, 1, 64, 21], [7, 33, 100, 10], [64, 64, 22], [2, 129, 19]]);
    }

    [Fact]
    public void Thread_count_does_not_change_results()
    {
        int[] tokens = TestModels.Tokens(80, ModelConfig.Demo.VocabSize, 9);
        using var one = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions(threads: 1));
        using var two = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions(threads: 2));
        var (stateOne, logitsOne) = Run(one, tokens, [80]);
        var (stateTwo, logitsTwo) = Run(two, tokens, [80]);
        Assert.Equal(stateOne, stateTwo);
        Assert.Equal(logitsOne, logitsTwo);
    }

    [Fact]
    public async Task Concurrent_sessions_get_the_same_results_as_sequential_ones()
    {
        using var model = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions());
        int[][] prompts = Enumerable.Range(0, 4).Select(i => TestModels.Tokens(70 + i, model.Config.VocabSize, (ulong)i)).ToArray();
        var sequential = prompts.Select(p => Run(model, p, [p.Length, 0])).ToArray();
        var concurrent = await Task.WhenAll(prompts.Select(p => Task.Run(() => Run(model, p, [p.Length - 5, 1, 1, 1, 1, 1]))));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(sequential[i].State, concurrent[i].State);
            Assert.Equal(sequential[i].Logits, concurrent[i].Logits);
        }
    }

    [Fact]
    public void Snapshot_restored_in_chunks_continues_with_identical_logits()
    {
        using var model = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions());
        int[] tokens = TestModels.Tokens(120, model.Config.VocabSize, 4);
        using var source = model.CreateCache("full");
        var logits = new float[model.Config.VocabSize];
        model.Forward(source, tokens.AsSpan(0, 100), logits);
        Assert.Equal(100 * source.BytesPerToken, source.StateLength);
        Assert.Equal(source.StateLength, source.CacheBytes);
        Assert.Equal(model.CacheBytesAt("full", 100), source.CacheBytes);

        byte[] state = new byte[source.StateLength];
        for (long offset = 0; offset < state.Length; offset += 1000)
        {
            source.ReadState(offset, state.AsSpan((int)offset, (int)Math.Min(1000, state.Length - offset)));
        }

        Assert.Equal(CodecChecks.ReadState(source), state);

        using var restored = model.CreateCache("full");
        model.Forward(restored, tokens.AsSpan(0, 40), logits); // restore must empty a non-empty cache
        restored.BeginRestore(100);
        Assert.Equal(100, restored.Position);
        Assert.Equal(state.Length, restored.StateLength);
        for (int offset = 0; offset < state.Length; offset += 777)
        {
            restored.WriteState(offset, state.AsSpan(offset, Math.Min(777, state.Length - offset)));
        }

        Assert.Equal(state, CodecChecks.ReadState(restored));
        var expected = new float[model.Config.VocabSize];
        var actual = new float[model.Config.VocabSize];
        model.Forward(source, tokens.AsSpan(100), expected);
        model.Forward(restored, tokens.AsSpan(100), actual);
        Assert.Equal(expected, actual);
        Assert.Throws<ArgumentOutOfRangeException>(() => restored.ReadState(restored.StateLength - 4, new byte[8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => restored.WriteState(-1, new byte[1]));
    }

    [Fact]
    public void Exhausted_pool_throws_and_leaves_the_cache_unchanged_until_blocks_are_released()
    {
        long bytesPerToken = FullKvCache.BytesPerTokenFor(ModelConfig.Demo);
        using var model = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions(budget: 3 * 16 * bytesPerToken, blockTokens: 16));
        Assert.Equal(3 * 16 * bytesPerToken, model.CacheBytesTotal);
        int[] tokens = TestModels.Tokens(60, model.Config.VocabSize, 1);
        var logits = new float[model.Config.VocabSize];

        var a = model.CreateCache("full");
        model.Forward(a, tokens.AsSpan(0, 40), logits);
        Assert.Equal(0, model.CacheBytesFree);
        using var b = model.CreateCache("full");
        Assert.Throws<CacheCapacityException>(() => model.Forward(b, tokens.AsSpan(0, 1), logits));
        Assert.Equal(0, b.Position);
        Assert.Throws<CacheCapacityException>(() => b.BeginRestore(1));

        CodecChecks.AssertRefusedAppendChangesNothing(model, a, tokens, logits);

        a.Dispose();
        Assert.Equal(model.CacheBytesTotal, model.CacheBytesFree);
        model.Forward(b, tokens.AsSpan(0, 48), logits);
        Assert.Equal(48, b.Position);
    }

    [Fact]
    public void Invalid_tokens_positions_caches_and_codecs_are_refused()
    {
        using var model = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions());
        using var cache = model.CreateCache("full");
        var logits = new float[model.Config.VocabSize];
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(cache, [1, -1], logits));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(cache, [model.Config.VocabSize], logits));
        Assert.Throws<ArgumentException>(() => model.Forward(cache, [], logits));
        Assert.Throws<ArgumentException>(() => model.Forward(cache, [1], new float[3]));
        Assert.Equal(0, cache.Position);

        model.Forward(cache, TestModels.Tokens(500, model.Config.VocabSize, 2), logits);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(cache, new int[13], logits));
        Assert.Equal(500, cache.Position);
        model.Forward(cache, new int[12], logits);

        Assert.Throws<ArgumentException>(() => model.CreateCache("svd-gqa"));
        Assert.Throws<ArgumentException>(() => model.CacheBytesAt("svd-gqa", 1));
        using var other = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions());
        using var foreign = other.CreateCache("full");
        Assert.Throws<ArgumentException>(() => model.Forward(foreign, [1], logits));
    }

    [Fact]
    public void Identity_fingerprint_and_sizes_describe_the_model()
    {
        using var model = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions());
        using var again = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions() with { Id = "demo" });
        using var otherSeed = TestModels.Generate(ModelConfig.Demo with { MaxPositionEmbeddings = 512 }, seed: 4);
        using var other = LlamaModel.Load(otherSeed.Directory, TestModels.SmallOptions());

        Assert.Equal(Path.GetFileName(_demo.Directory), model.Id);
        Assert.Equal("demo", again.Id);
        Assert.Equal(model.Fingerprint, again.Fingerprint);
        Assert.NotEqual(model.Fingerprint, other.Fingerprint);
        Assert.Matches("^[0-9a-f]{16}$", model.Fingerprint);
        Assert.Equal(["full", "fourier"], model.Codecs);
        Assert.Equal("cpu", model.Backend);
        var c = model.Config;
        long expected = 2L * c.VocabSize * c.HiddenSize + c.HiddenSize + c.NumHiddenLayers
            * (2L * c.HiddenSize + 2L * c.HiddenSize * c.QueryDim + 2L * c.HiddenSize * c.KeyValueDim + 3L * c.HiddenSize * c.IntermediateSize);
        Assert.Equal(expected, model.ParameterCount);
        Assert.Equal(2L * c.NumHiddenLayers * c.KeyValueDim * 4 * 7, model.CacheBytesAt("full", 7));
    }

    [Fact]
    public void Missing_or_misshapen_tensors_are_reported_by_name()
    {
        var config = TestModels.Fixtures[0].Config;
        using var temp = TestModels.Generate(config);
        string weights = Path.Combine(temp.Directory, "model.safetensors");
        var specs = LlamaTensors.List(config).Select(t => new SafetensorsTensorSpec(t.Name, TensorDtype.F32, t.Shape)).ToList();
        specs[1] = specs[1] with { Shape = [config.HiddenSize + 1] };
        WriteZeros(weights, specs);
        var e = Assert.Throws<InvalidDataException>(() => LlamaModel.Load(temp.Directory, TestModels.SmallOptions()));
        Assert.Contains("model.layers.0.input_layernorm.weight", e.Message);

        WriteZeros(weights, specs.Where(s => s.Name != "lm_head.weight").Select(s => s with { Shape = s.Name.Contains("input_layernorm") ? [config.HiddenSize] : s.Shape }).ToList());
        e = Assert.Throws<InvalidDataException>(() => LlamaModel.Load(temp.Directory, TestModels.SmallOptions()));
        Assert.Contains("lm_head.weight", e.Message);

        File.Delete(weights);
        Assert.Throws<FileNotFoundException>(() => LlamaModel.Load(temp.Directory, TestModels.SmallOptions()));
    }

    [Fact]
    public void A_decode_step_allocates_no_managed_memory()
    {
        using var model = LlamaModel.Load(_demo.Directory, TestModels.SmallOptions());
        CodecChecks.AssertDecodeStepAllocatesNothing(model, "full");
    }

    private static (byte[] State, float[] Logits) Run(LlamaModel model, int[] tokens, int[] split)
    {
        using var cache = model.CreateCache("full");
        var logits = new float[model.Config.VocabSize];
        int at = 0;
        foreach (int n in split.Where(n => n > 0))
        {
            model.Forward(cache, tokens.AsSpan(at, n), logits);
            at += n;
        }

        return (CodecChecks.ReadState(cache), logits);
    }

    private static void WriteZeros(string path, IReadOnlyList<SafetensorsTensorSpec> specs)
    {
        using var writer = new SafetensorsWriter(path, specs);
        foreach (var s in specs)
        {
            writer.Write(new float[s.ElementCount]);
        }

        writer.Complete();
    }
}
