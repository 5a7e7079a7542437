namespace KvCache.GpuWorker.Tests;

/// <summary>Checks every codec must pass: batch invariance, snapshot round trip, no allocation per decode step.</summary>
internal static class CodecChecks
{
    /// <summary>
    /// Token by token is the reference; each split must give the same logits at the end of every piece and the same
    /// final state, bit for bit.
    /// </summary>
    public static void AssertAnyChunkingIsBitIdentical(LlamaModel model, string codec, int[] tokens, int[][] splits)
    {
        using var single = model.CreateCache(codec);
        var perPosition = new float[tokens.Length][];
        for (int i = 0; i < tokens.Length; i++)
        {
            perPosition[i] = new float[model.Config.VocabSize];
            model.Forward(single, tokens.AsSpan(i, 1), perPosition[i]);
        }

        byte[] reference = ReadState(single);
        foreach (var split in splits)
        {
            Assert.Equal(tokens.Length, split.Sum());
            using var cache = model.CreateCache(codec);
            var logits = new float[model.Config.VocabSize];
            int at = 0;
            foreach (int n in split)
            {
                model.Forward(cache, tokens.AsSpan(at, n), logits);
                at += n;
                Assert.Equal(perPosition[at - 1], logits);
            }

            Assert.Equal(reference, ReadState(cache));
        }
    }

    /// <summary>
    /// The state at <paramref name="at"/> read in odd-sized chunks, restored into a non-empty fresh cache in other
    /// chunks, reads back identically and continues with the same logits as the source.
    /// </summary>
    public static void AssertSnapshotRoundTrip(LlamaModel model, string codec, int[] tokens, int at)
    {
        using var source = model.CreateCache(codec);
        var logits = new float[model.Config.VocabSize];
        model.Forward(source, tokens.AsSpan(0, at), logits);
        Assert.Equal(source.CacheBytes, source.StateLength);
        byte[] state = new byte[source.StateLength];
        for (long offset = 0; offset < state.Length; offset += 1000)
        {
            source.ReadState(offset, state.AsSpan((int)offset, (int)Math.Min(1000, state.Length - offset)));
        }

        Assert.Equal(ReadState(source), state);

        using var restored = model.CreateCache(codec);
        model.Forward(restored, tokens.AsSpan(0, Math.Min(40, tokens.Length)), logits);
        restored.BeginRestore(at);
        Assert.Equal(at, restored.Position);
        Assert.Equal(state.Length, restored.StateLength);
        for (int offset = 0; offset < state.Length; offset += 777)
        {
            restored.WriteState(offset, state.AsSpan(offset, Math.Min(777, state.Length - offset)));
        }

        Assert.Equal(state, ReadState(restored));
        var expected = new float[model.Config.VocabSize];
        var actual = new float[model.Config.VocabSize];
        model.Forward(source, tokens.AsSpan(at), expected);
        model.Forward(restored, tokens.AsSpan(at), actual);
        Assert.Equal(expected, actual);
        Assert.Equal(ReadState(source), ReadState(restored));
        Assert.Throws<ArgumentOutOfRangeException>(() => restored.ReadState(restored.StateLength - 4, new byte[8]));
        Assert.Throws<ArgumentOutOfRangeException>(() => restored.WriteState(-1, new byte[1]));
    }

    /// <summary>
    /// A snapshot taken from one loaded instance of a model, restored into a cache of another instance loaded from the
    /// same directory (as a resume on another silo does), continues with the twin's logits and state.
    /// </summary>
    public static void AssertSnapshotMovesToAnotherInstance(string directory, ModelLoadOptions options, string codec, int[] tokens, int at)
    {
        using var first = LlamaModel.Load(directory, options);
        using var second = LlamaModel.Load(directory, options);
        Assert.Equal(first.Fingerprint, second.Fingerprint);
        using var source = first.CreateCache(codec);
        var expected = new float[first.Config.VocabSize];
        var actual = new float[first.Config.VocabSize];
        first.Forward(source, tokens.AsSpan(0, at), expected);
        byte[] state = ReadState(source);
        using var restored = second.CreateCache(codec);
        restored.BeginRestore(at);
        restored.WriteState(0, state);
        first.Forward(source, tokens.AsSpan(at), expected);
        second.Forward(restored, tokens.AsSpan(at), actual);
        Assert.Equal(expected, actual);
        Assert.Equal(ReadState(source), ReadState(restored));
    }

    public static void AssertDecodeStepAllocatesNothing(LlamaModel model, string codec)
    {
        using var cache = model.CreateCache(codec);
        var logits = new float[model.Config.VocabSize];
        int[] token = [1];
        for (int i = 0; i < 40; i++)
        {
            model.Forward(cache, token, logits);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++)
        {
            model.Forward(cache, token, logits);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>The prompt in one Forward, then greedy decode: the logits after the prompt and after each decoded token.</summary>
    public static List<float[]> GreedyLogits(ILanguageModel model, IKvCache cache, int[] prompt, int steps)
    {
        var result = new List<float[]>();
        var logits = new float[model.Config.VocabSize];
        model.Forward(cache, prompt, logits);
        result.Add((float[])logits.Clone());
        for (int step = 0; step < steps; step++)
        {
            model.Forward(cache, [TestModels.ArgMax(logits)], logits);
            result.Add((float[])logits.Clone());
        }

        return result;
    }

    /// <summary>
    /// A cache at 40 tokens in a pool with room for 8 more: 9 tokens are refused and change nothing (position and
    /// state), then 8 go in.
    /// </summary>
    public static void AssertRefusedAppendChangesNothing(LlamaModel model, IKvCache cache, int[] tokens, float[] logits)
    {
        Assert.Equal(40, cache.Position);
        byte[] before = ReadState(cache);
        Assert.Throws<CacheCapacityException>(() => model.Forward(cache, tokens.AsSpan(40, 9), logits));
        Assert.Equal(40, cache.Position);
        Assert.Equal(before, ReadState(cache));
        model.Forward(cache, tokens.AsSpan(40, 8), logits);
        Assert.Equal(48, cache.Position);
    }

    public static byte[] ReadState(IKvCache cache)
    {
        var state = new byte[cache.StateLength];
        cache.ReadState(0, state);
        return state;
    }
}
