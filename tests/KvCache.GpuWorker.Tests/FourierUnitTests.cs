using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;
using Xunit.Abstractions;

namespace KvCache.GpuWorker.Tests;

public sealed unsafe class FourierUnitTests(ITestOutputHelper output) : IDisposable
{
    private static readonly ModelConfig Config = ModelConfig.Demo with { MaxPositionEmbeddings = 512 };
    private readonly TempModel _model = TestModels.Generate(Config, seed: 3);

    public void Dispose() => _model.Dispose();

    [Fact]
    public void Nothing_compressed_equals_full_bit_for_bit_past_the_window()
    {
        FourierConfig.Default(Config, dimsFraction: 0, window: 16, frequencies: 4).Write(_model.Directory);
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        Assert.Equal(["full", "fourier"], model.Codecs);
        int[] tokens = TestModels.Tokens(150, Config.VocabSize, 5);
        var full = PerPosition(model, "full", tokens);
        var fourier = PerPosition(model, "fourier", tokens);
        for (int i = 0; i < tokens.Length; i++)
        {
            Assert.Equal(full[i], fourier[i]);
        }
    }

    [Theory]
    [InlineData(0.5, 8)]
    [InlineData(0.25, 32)]
    public void Compressed_fourier_equals_full_until_the_window_fills_then_stays_close(double fraction, int frequencies)
    {
        FourierCalibrator.Calibrate(
            _model.Directory,
            new FourierCalibrationOptions { DimsFraction = fraction, Frequencies = frequencies, Window = 16, CalibrationTokens = 512, ComputeThreads = 2 });
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        int[] tokens = TestModels.Tokens(400, Config.VocabSize, 6);
        var full = PerPosition(model, "full", tokens);
        var fourier = PerPosition(model, "fourier", tokens);
        for (int i = 0; i < 4 + 16; i++)
        {
            Assert.Equal(full[i], fourier[i]);
        }

        float maxDiff = 0;
        int agree = 0, compared = 0;
        for (int i = 4 + 16; i < tokens.Length; i++)
        {
            Assert.All(fourier[i], v => Assert.True(float.IsFinite(v)));
            for (int v = 0; v < full[i].Length; v++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(full[i][v] - fourier[i][v]));
            }

            agree += TestModels.ArgMax(full[i]) == TestModels.ArgMax(fourier[i]) ? 1 : 0;
            compared++;
        }

        output.WriteLine(FormattableString.Invariant(
            $"fourier (W 16, k {frequencies}, {fraction:P0} of dims, calibrated) vs full over positions 20..399: max |Δlogit| {maxDiff:G4}, top-1 agreement {agree}/{compared}"));
        // A generated model over random tokens is the hardest case (its keys are noise along the sequence): require
        // only far better than chance (1 / vocab); the recorded figures are the measurement.
        Assert.True(agree * 10 > compared, $"top-1 agreement {agree}/{compared}");
    }

    [Theory]
    [InlineData(0.5, 8)]
    [InlineData(1.0, 4)]
    [InlineData(0.25, 2)]
    public void Any_chunking_gives_bit_identical_logits_and_state_across_the_window(double fraction, int frequencies)
    {
        FourierConfig.Default(Config, dimsFraction: fraction, window: 16, frequencies: frequencies).Write(_model.Directory);
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        int[] tokens = TestModels.Tokens(150, Config.VocabSize, 7);
        CodecChecks.AssertAnyChunkingIsBitIdentical(model, "fourier", tokens, [[150], [1, 63, 1, 64, 21], [7, 33, 100, 10], [19, 2, 129]]);
    }

    [Fact]
    public void Folding_the_query_into_the_coefficients_equals_attending_over_reconstructed_tokens()
    {
        FourierConfig.Default(Config, dimsFraction: 0.5, window: 16, frequencies: 8).Write(_model.Directory);
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        using var cache = (FourierKvCache)model.CreateCache("fourier");
        model.Forward(cache, TestModels.Tokens(120, Config.VocabSize, 8), new float[Config.VocabSize]);
        var f = cache.Layout;
        int d = f.HeadDim, heads = Config.NumAttentionHeads, position = cache.Position - 1, middle = f.MiddleCount(cache.Position);
        var random = new Random(3);
        float[] q = Enumerable.Range(0, heads * d).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var folded = new float[heads * d];
        using var job = new FourierAttentionJob(1, heads, Config.MaxPositionEmbeddings, d, f.Coefficients);
        float scale = 1f / MathF.Sqrt(d);
        for (int layer = 0; layer < f.Layers; layer++)
        {
            fixed (float* qp = q, op = folded)
            {
                job.Set(cache, layer, qp, position, scale, op);
                job.Execute(0, 0);
            }

            for (int h = 0; h < heads; h++)
            {
                int g = h / (heads / f.KvHeads);
                var keys = new double[cache.Position][];
                var values = new double[cache.Position][];
                for (int t = 0; t < cache.Position; t++)
                {
                    bool exact = t < f.Init || t >= f.Init + middle;
                    keys[t] = exact ? Exact(cache.Slot(f.SlotOf(t), layer, 0, g), d) : Reconstruct(cache, layer, 0, g, t - f.Init);
                    values[t] = exact ? Exact(cache.Slot(f.SlotOf(t), layer, 1, g), d) : Reconstruct(cache, layer, 1, g, t - f.Init);
                }

                var scores = keys.Select(k => Enumerable.Range(0, d).Sum(i => q[h * d + i] * k[i]) * scale).ToArray();
                double max = scores.Max();
                var p = scores.Select(s => Math.Exp(s - max)).ToArray();
                double sum = p.Sum();
                for (int i = 0; i < d; i++)
                {
                    double expected = Enumerable.Range(0, cache.Position).Sum(t => p[t] * values[t][i]) / sum;
                    Assert.True(Math.Abs(expected - folded[h * d + i]) <= 1e-4, $"layer {layer} head {h} dim {i}: {expected} vs {folded[h * d + i]}");
                }
            }
        }
    }

    [Theory]
    [InlineData(0.5, 8, 40)]
    [InlineData(1.0, 4, 37)]
    [InlineData(0.25, 8, 23)]
    public void Runs_across_blocks_the_window_wrap_and_the_horizon_equal_per_key_attention_bit_for_bit_in_any_head_grouping(double fraction, int frequencies, int horizon)
    {
        // Middle rows run to block ends (32 or 21 exact rows a block, or none), basis rows to the horizon, window
        // slots to the ring's wrap and block ends: the job's run-by-run kernels against one Dot and Axpy per key.
        FourierConfig.Default(Config, dimsFraction: fraction, window: 16, frequencies: frequencies, horizon: horizon).Write(_model.Directory);
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        using var cache = (FourierKvCache)model.CreateCache("fourier");
        var f = cache.Layout;
        int d = f.HeadDim, heads = Config.NumAttentionHeads;
        float scale = 1f / MathF.Sqrt(d);
        var random = new Random(5);
        float[] q = Enumerable.Range(0, heads * d).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] actual = new float[heads * d], expected = new float[heads * d];

        // One group of all heads, two groups of two, and a group per head: grouping must never change a bit.
        FourierAttentionJob[] jobs = [.. new[] { 1, 2, heads }.Select(threads => new FourierAttentionJob(threads, heads, Config.MaxPositionEmbeddings, d, f.Coefficients))];
        Assert.Equal([1, 2, heads], jobs.Select(job => job.Items));
        int[] tokens = TestModels.Tokens(150, Config.VocabSize, 9);
        int at = 0;
        try
        {
            foreach (int p in new[] { 3, 21, 37, 60, 101, 150 })
            {
                model.Forward(cache, tokens.AsSpan(at, p - at), new float[Config.VocabSize]);
                at = p;
                for (int layer = 0; layer < f.Layers; layer++)
                {
                    fixed (float* qp = q, ap = actual, ep = expected)
                    {
                        for (int h = 0; h < heads; h++)
                        {
                            PerKeyAttention(cache, layer, qp + h * d, h / (heads / f.KvHeads), p - 1, scale, ep + h * d);
                        }

                        foreach (var job in jobs)
                        {
                            Array.Clear(actual);
                            job.Set(cache, layer, qp, p - 1, scale, ap);
                            for (int item = 0; item < job.Items; item++)
                            {
                                job.Execute(item, 0);
                            }

                            Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), actual.Select(BitConverter.SingleToInt32Bits));
                        }
                    }
                }
            }
        }
        finally
        {
            foreach (var job in jobs)
            {
                job.Dispose();
            }
        }
    }

    [Fact]
    public void Snapshot_restored_in_chunks_continues_with_identical_logits()
    {
        FourierConfig.Default(Config, dimsFraction: 0.5, window: 16, frequencies: 8).Write(_model.Directory);
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        int[] tokens = TestModels.Tokens(140, Config.VocabSize, 4);
        foreach (int at in new[] { 13, 20, 21, 100 })
        {
            using var source = model.CreateCache("fourier");
            var logits = new float[Config.VocabSize];
            model.Forward(source, tokens.AsSpan(0, at), logits);
            byte[] state = new byte[source.StateLength];
            for (long offset = 0; offset < state.Length; offset += 1000)
            {
                source.ReadState(offset, state.AsSpan((int)offset, (int)Math.Min(1000, state.Length - offset)));
            }

            Assert.Equal(CodecChecks.ReadState(source), state);
            using var restored = model.CreateCache("fourier");
            model.Forward(restored, tokens.AsSpan(0, 60), logits); // restore must empty a non-empty cache
            restored.BeginRestore(at);
            Assert.Equal(state.Length, restored.StateLength);
            for (int offset = 0; offset < state.Length; offset += 777)
            {
                restored.WriteState(offset, state.AsSpan(offset, Math.Min(777, state.Length - offset)));
            }

            Assert.Equal(state, CodecChecks.ReadState(restored));
            var expected = new float[Config.VocabSize];
            var actual = new float[Config.VocabSize];
            model.Forward(source, tokens.AsSpan(at), expected);
            model.Forward(restored, tokens.AsSpan(at), actual);
            Assert.Equal(expected, actual);
            Assert.Equal(CodecChecks.ReadState(source), CodecChecks.ReadState(restored));
        }
    }

    [Fact]
    public void Cache_bytes_equal_the_formula()
    {
        FourierConfig.Default(Config, dimsFraction: 0.25, window: 16, frequencies: 8).Write(_model.Directory);
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        using var cache = model.CreateCache("fourier");
        int layers = Config.NumHiddenLayers, kv = Config.NumKeyValueHeads, d = Config.HeadDim, m = 8, k2 = 16, w = 16;
        Assert.Equal(2L * layers * kv * (d - m) * 4, cache.BytesPerToken);
        int[] tokens = TestModels.Tokens(300, Config.VocabSize, 2);
        int at = 0;
        foreach (int p in new[] { 1, 4, 19, 20, 21, 22, 64, 200, 300 })
        {
            model.Forward(cache, tokens.AsSpan(at, p - at), new float[Config.VocabSize]);
            at = p;
            long formula = 4L * 2 * layers * kv * (d * Math.Min(p, 4 + w) + (p > 4 + w ? k2 * m + (d - m) * (p - 4 - w) : 0));
            Assert.Equal(formula, cache.CacheBytes);
            Assert.Equal(formula, cache.StateLength);
            Assert.Equal(formula, model.CacheBytesAt("fourier", p));
            if (p <= 4 + w)
            {
                Assert.Equal(model.CacheBytesAt("full", p), formula);
            }
        }
    }

    [Fact]
    public void Both_codecs_share_the_pool_and_exhaustion_leaves_the_cache_unchanged()
    {
        FourierConfig.Default(Config, dimsFraction: 0.5, window: 16, frequencies: 8).Write(_model.Directory);
        long block = 16 * FullKvCache.BytesPerTokenFor(Config);
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions(budget: 5 * block, blockTokens: 16));
        var logits = new float[Config.VocabSize];
        int[] tokens = TestModels.Tokens(100, Config.VocabSize, 1);
        var full = model.CreateCache("full");
        model.Forward(full, tokens.AsSpan(0, 20), logits); // 2 blocks
        Assert.Equal(3 * block, model.CacheBytesFree);

        // Fourier at 21 tokens: 2 slot blocks + 1 coefficient block (2k · m · 16 pieces fits one) + 1 middle block.
        using var fourier = model.CreateCache("fourier");
        model.Forward(fourier, tokens.AsSpan(0, 20), logits);
        Assert.Equal(block, model.CacheBytesFree);
        byte[] before = CodecChecks.ReadState(fourier);
        Assert.Throws<CacheCapacityException>(() => model.Forward(fourier, tokens.AsSpan(20, 1), logits));
        Assert.Equal(20, fourier.Position);
        Assert.Equal(before, CodecChecks.ReadState(fourier));
        Assert.Equal(block, model.CacheBytesFree);

        full.Dispose();
        model.Forward(fourier, tokens.AsSpan(20, 1), logits);
        Assert.Equal(21, fourier.Position);
        fourier.Dispose();
        Assert.Equal(model.CacheBytesTotal, model.CacheBytesFree);
    }

    [Fact]
    public void A_decode_step_allocates_no_managed_memory()
    {
        FourierConfig.Default(Config, dimsFraction: 0.5, window: 16, frequencies: 8).Write(_model.Directory);
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        using var cache = model.CreateCache("fourier");
        var logits = new float[Config.VocabSize];
        int[] token = [1];
        for (int i = 0; i < 40; i++)
        {
            model.Forward(cache, token, logits);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 40; i++)
        {
            model.Forward(cache, token, logits);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Calibration_writes_a_config_the_model_loads()
    {
        var options = new FourierCalibrationOptions { DimsFraction = 0.25, Frequencies = 8, Window = 32, CalibrationTokens = 300, ComputeThreads = 2 };
        var written = FourierCalibrator.Calibrate(_model.Directory, options);
        var read = FourierConfig.Load(_model.Directory, Config);
        Assert.Equal(written.ToJson(), read.ToJson());
        Assert.All(Enumerable.Range(0, Config.NumHiddenLayers), l => Assert.Equal(8, read.CompressedDimsOf(l)));
        Assert.Equal(300, read.CalibrationTokens);
        Assert.Equal(FourierConfig.DefaultHorizon(Config, 32, 8), read.Horizon);

        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        Assert.Equal(["full", "fourier"], model.Codecs);
        using var cache = model.CreateCache("fourier");
        var logits = new float[Config.VocabSize];
        model.Forward(cache, TestModels.Tokens(100, Config.VocabSize, 3), logits);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));

        // The calibration is part of the model's identity: fourier state depends on it.
        File.Delete(Path.Combine(_model.Directory, FourierConfig.FileName));
        using var uncalibrated = LlamaModel.Load(_model.Directory, TestModels.SmallOptions());
        Assert.NotEqual(model.Fingerprint, uncalibrated.Fingerprint);
    }

    [Fact]
    public void Malformed_or_misfitting_configs_are_refused()
    {
        var good = FourierConfig.Default(Config, dimsFraction: 0.5, window: 16, frequencies: 8);
        Assert.Throws<ArgumentException>(() => (good with { Horizon = 16 }).Validate(Config));
        Assert.Throws<ArgumentException>(() => (good with { KeyDims = good.KeyDims[1..] }).Validate(Config));
        var duplicate = good.ValueDims.Select(l => l.Select(h => h.Select(_ => 3).ToArray()).ToArray()).ToArray();
        Assert.Throws<ArgumentException>(() => (good with { ValueDims = duplicate }).Validate(Config));
        Assert.Throws<ArgumentException>(() => FourierConfig.Default(Config, dimsFraction: 1.5));
        File.WriteAllText(Path.Combine(_model.Directory, FourierConfig.FileName), """{"method": "other"}""");
        Assert.Throws<FormatException>(() => LlamaModel.Load(_model.Directory, TestModels.SmallOptions()));
    }

    [Fact]
    public void Default_coefficients_that_do_not_fit_a_block_leave_only_full()
    {
        // 2k · m = 64 · 16 floats exceed a one-token block (512 floats); with no fourier.json the codec is left out.
        using var model = LlamaModel.Load(_model.Directory, TestModels.SmallOptions(blockTokens: 1));
        Assert.Equal(["full"], model.Codecs);
        Assert.Throws<ArgumentException>(() => model.CreateCache("fourier"));
        FourierConfig.Default(Config).Write(_model.Directory);
        Assert.Throws<ArgumentException>(() => LlamaModel.Load(_model.Directory, TestModels.SmallOptions(blockTokens: 1)));
    }

    /// <summary>One head's fourier attention one key at a time: Dot per score, Axpy per value, in position order.</summary>
    private static void PerKeyAttention(FourierKvCache cache, int layer, float* q, int g, int position, float scale, float* o)
    {
        var f = cache.Layout;
        int d = f.HeadDim, e = f.ExactOf(layer), m = f.CompressedOf(layer), c2 = f.Coefficients;
        int n = position + 1, init = Math.Min(n, f.Init), middle = f.MiddleCount(n);
        float* s = (float*)NativeMemory.AlignedAlloc((nuint)((n + d + c2) * sizeof(float)), 64);
        float* permuted = s + n, folded = permuted + d;
        try
        {
            for (int t = 0; t < n; t++)
            {
                if (t >= init && t < init + middle)
                {
                    continue;
                }

                s[t] = Kernels.Dot(q, cache.Slot(f.SlotOf(t), layer, 0, g), d) * scale;
            }

            if (middle > 0)
            {
                int* order = f.OrderOf(layer, 0, g);
                for (int i = 0; i < d; i++)
                {
                    permuted[i] = q[order[i]];
                }

                for (int j = 0; j < c2 && m > 0; j++)
                {
                    folded[j] = Kernels.Dot(permuted + e, cache.Coefficients(layer, 0, g) + j * m, m);
                }

                for (int u = 0; u < middle; u++)
                {
                    float score = e > 0 ? Kernels.Dot(permuted, cache.Middle(u, layer, 0, g), e) : 0f;
                    if (m > 0)
                    {
                        score += Kernels.Dot(folded, f.Basis + (u % f.Horizon) * c2, c2);
                    }

                    s[init + u] = score * scale;
                }
            }

            float sum = Kernels.Exponentiate(s, n);
            new Span<float>(o, d).Clear();
            for (int t = 0; t < init; t++)
            {
                Kernels.Axpy(s[t], cache.Slot(t, layer, 1, g), o, d);
            }

            if (middle > 0)
            {
                int* order = f.OrderOf(layer, 1, g);
                for (int i = 0; i < d; i++)
                {
                    permuted[i] = o[order[i]];
                }

                new Span<float>(folded, c2).Clear();
                for (int u = 0; u < middle; u++)
                {
                    if (e > 0)
                    {
                        Kernels.Axpy(s[init + u], cache.Middle(u, layer, 1, g), permuted, e);
                    }

                    if (m > 0)
                    {
                        Kernels.Axpy(s[init + u], f.Basis + (u % f.Horizon) * c2, folded, c2);
                    }
                }

                for (int j = 0; j < c2 && m > 0; j++)
                {
                    Kernels.Axpy(folded[j], cache.Coefficients(layer, 1, g) + j * m, permuted + e, m);
                }

                for (int i = 0; i < d; i++)
                {
                    o[order[i]] = permuted[i];
                }
            }

            for (int t = init + middle; t < n; t++)
            {
                Kernels.Axpy(s[t], cache.Slot(f.SlotOf(t), layer, 1, g), o, d);
            }

            for (int i = 0; i < d; i++)
            {
                o[i] *= 1f / sum;
            }
        }
        finally
        {
            NativeMemory.AlignedFree(s);
        }
    }

    private static double[] Exact(float* x, int d) => Enumerable.Range(0, d).Select(i => (double)x[i]).ToArray();

    /// <summary>k̂_u: exact dims from the middle store, compressed dims Σ_j c_j φ_j(u).</summary>
    private static double[] Reconstruct(FourierKvCache cache, int layer, int side, int head, int u)
    {
        var f = cache.Layout;
        var x = new double[f.HeadDim];
        int* order = f.OrderOf(layer, side, head);
        int e = f.ExactOf(layer), m = f.CompressedOf(layer);
        float* exact = e > 0 ? cache.Middle(u, layer, side, head) : null;
        for (int i = 0; i < e; i++)
        {
            x[order[i]] = exact[i];
        }

        float* c = cache.Coefficients(layer, side, head);
        for (int i = 0; i < m; i++)
        {
            double sum = 0;
            for (int j = 0; j < f.Coefficients; j++)
            {
                sum += c[j * m + i] * FourierLayout.BasisValue(j, u % f.Horizon, f.Horizon);
            }

            x[order[e + i]] = sum;
        }

        return x;
    }

    private static float[][] PerPosition(LlamaModel model, string codec, int[] tokens)
    {
        using var cache = model.CreateCache(codec);
        var result = new float[tokens.Length][];
        for (int i = 0; i < tokens.Length; i++)
        {
            result[i] = new float[model.Config.VocabSize];
            model.Forward(cache, tokens.AsSpan(i, 1), result[i]);
        }

        return result;
    }
}
