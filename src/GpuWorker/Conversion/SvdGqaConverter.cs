using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>Settings of an SVD-GQA conversion.</summary>
public sealed record SvdGqaOptions
{
    /// <summary>Cache size relative to full: d = ratio · t · head_dim must be a whole number (1 is exact).</summary>
    public double Ratio { get; init; } = 0.5;

    /// <summary>KV heads per group (t); null: of the sizes that divide the KV heads and give a whole rank, the one nearest to
    /// 1 / ratio (ties: the larger), so each group keeps about one head's width.</summary>
    public int? GroupSize { get; init; }

    /// <summary>Calibration tokens run through the original model.</summary>
    public int CalibrationTokens { get; init; } = 4096;

    /// <summary>Seed of the calibration token ids.</summary>
    public long CalibrationSeed { get; init; } = 1;

    /// <summary>Real calibration token ids (e.g. a text's bytes for a byte-level model), read in order instead of
    /// generated ones; their first <see cref="CalibrationTokens"/> are used, so there must be at least that many.</summary>
    public IReadOnlyList<int>? CalibrationIds { get; init; }

    /// <summary>Calibration tokens per sequence (capped by max positions), so keys see RoPE at many positions.</summary>
    public int SequenceLength { get; init; } = 512;

    public int ComputeThreads { get; init; } = Environment.ProcessorCount;
}

/// <summary>What a conversion produced: the converted config and, per layer, the share of calibration energy kept.</summary>
/// <param name="KeyEnergyKept">Per layer: sum of the kept eigenvalues of the groups' KᵀK over the sum of all.</param>
/// <param name="ValueEnergyKept">The same for VᵀV.</param>
public sealed record SvdGqaConversion(ModelConfig Config, IReadOnlyList<double> KeyEnergyKept, IReadOnlyList<double> ValueEnergyKept);

/// <summary>
/// Offline SVD-GQA conversion (Yu et al. 2024, "Effectively Compress KV Heads for LLM") of a Llama checkpoint.
/// </summary>
/// <remarks>
/// <para>Calibration: the original model runs over generated token ids (SplitMix64 from the seed, uniform over
/// the vocabulary, in sequences of <see cref="SvdGqaOptions.SequenceLength"/>), and its full cache supplies each
/// layer's post-RoPE keys and values. Uniform ids are a stand-in for real text: they make the conversion
/// reproducible without a tokenizer or corpus, at some cost in accuracy below full rank; real text's ids can be given
/// instead (<see cref="SvdGqaOptions.CalibrationIds"/>).</para>
/// <para>For each layer and group g of t consecutive KV heads, Ψ_K,g and Ψ_V,g [t·head_dim, d] are the top-d
/// eigenvectors of KᵀK and VᵀV (in double) over the calibration tokens — the top right singular vectors of the
/// concatenated K (after RoPE) and V. Values fold into the weights: W_V',g = [W_V^1 … W_V^t] Ψ_V,g and, for query
/// head i reading KV head j (slot s of group g), W_O^i' = Ψ_V,g[s]ᵀ W_O^i with Ψ_V,g[s] the rows s·head_dim.. of Ψ_V,g. Keys cannot fold through RoPE, so Ψ_K,gᵀ is stored
/// as <c>model.layers.N.self_attn.k_basis.weight</c> [groups·d, t·head_dim]: the cache keeps c = [R k¹ … R kᵗ] Ψ_K,g
/// and queries use q̃ = (R q) Ψ_K,j (see <see cref="SvdGqaKvCache"/>).</para>
/// <para>Output: config.json (the original's plus <c>kv_compression</c>, torch_dtype float32) and model.safetensors
/// in F32; other files of the source directory (tokenizer etc.) are copied.</para>
/// </remarks>
public static class SvdGqaConverter
{
    /// <summary>Converts the checkpoint in <paramref name="sourceDirectory"/> into <paramref name="outputDirectory"/>.</summary>
    /// <exception cref="ArgumentException">A ratio or group size the model's shape does not allow, or the same directory.</exception>
    /// <exception cref="NotSupportedException">The source is already converted.</exception>
    public static SvdGqaConversion Convert(string sourceDirectory, string outputDirectory, SvdGqaOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.CalibrationTokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SequenceLength, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.CalibrationIds?.Count ?? int.MaxValue, options.CalibrationTokens, nameof(options.CalibrationIds));
        if (Path.GetFullPath(sourceDirectory).TrimEnd('/') == Path.GetFullPath(outputDirectory).TrimEnd('/'))
        {
            throw new ArgumentException("The output directory must differ from the source.", nameof(outputDirectory));
        }

        var source = ModelConfig.Load(Path.Combine(sourceDirectory, "config.json"));
        if (source.SvdGqa is not null)
        {
            throw new NotSupportedException($"{sourceDirectory} is already SVD-GQA-converted.");
        }

        var config = source with { TorchDtype = "float32", SvdGqa = Plan(source, options) };
        config.Validate();
        var svd = config.SvdGqa!;
        var (keyGram, valueGram) = Calibrate(sourceDirectory, source, svd.GroupSize, options);

        int layers = source.NumHiddenLayers, groups = config.SvdGqaGroups, width = svd.GroupSize * source.HeadDim;
        var psiK = new double[layers][][];
        var psiV = new double[layers][][];
        var keyKept = new double[layers];
        var valueKept = new double[layers];
        for (int l = 0; l < layers; l++)
        {
            psiK[l] = new double[groups][];
            psiV[l] = new double[groups][];
            keyKept[l] = TopEigenvectors(keyGram[l], width, svd.Rank, psiK[l]);
            valueKept[l] = TopEigenvectors(valueGram[l], width, svd.Rank, psiV[l]);
        }

        Directory.CreateDirectory(outputDirectory);
        WriteWeights(sourceDirectory, outputDirectory, config, psiK, psiV);
        foreach (string file in Directory.EnumerateFiles(sourceDirectory))
        {
            string name = Path.GetFileName(file);
            if (name != "config.json" && !name.EndsWith(".safetensors", StringComparison.Ordinal))
            {
                File.Copy(file, Path.Combine(outputDirectory, name), overwrite: true);
            }
        }

        // Config last: a directory with a config.json is a complete model.
        File.WriteAllText(Path.Combine(outputDirectory, "config.json"), config.ToJson());
        return new SvdGqaConversion(config, keyKept, valueKept);
    }

    private static SvdGqaConfig Plan(ModelConfig c, SvdGqaOptions o)
    {
        if (!(o.Ratio > 0 && o.Ratio <= 1))
        {
            throw new ArgumentException($"Ratio {o.Ratio} must lie in (0, 1].");
        }

        // A group size must divide the KV heads and give a whole rank d = ratio · t · head_dim.
        int[] valid = [.. Enumerable.Range(1, c.NumKeyValueHeads).Where(t => c.NumKeyValueHeads % t == 0 && RankOf(o.Ratio, t, c.HeadDim) is not null)];
        if (valid.Length == 0)
        {
            throw new ArgumentException(
                $"Ratio {o.Ratio} fits no group size of the {c.NumKeyValueHeads} KV heads (ratio × group size × head dim {c.HeadDim} must be a whole number of dimensions).");
        }

        // By default the valid size nearest to 1 / ratio (each group then keeps about one head's width); ties take the larger.
        int t = o.GroupSize ?? valid.OrderBy(v => Math.Abs(v - (1 / o.Ratio))).ThenByDescending(v => v).First();
        if (!valid.Contains(t))
        {
            throw new ArgumentException(
                $"Group size {t} does not fit ratio {o.Ratio} on {c.NumKeyValueHeads} KV heads of dim {c.HeadDim}; valid group sizes: {string.Join(", ", valid)}.");
        }

        int rank = RankOf(o.Ratio, t, c.HeadDim)!.Value;

        return new SvdGqaConfig
        {
            Ratio = o.Ratio,
            GroupSize = t,
            Rank = rank,
            CalibrationTokens = o.CalibrationTokens,
            CalibrationSeed = o.CalibrationSeed,
        };
    }

    /// <summary>The rank ratio · t · head_dim, or null when it is not a whole number of dimensions (at least 1).</summary>
    private static int? RankOf(double ratio, int groupSize, int headDim)
    {
        double exact = ratio * groupSize * headDim;
        int rank = (int)Math.Round(exact);
        return rank >= 1 && Math.Abs(exact - rank) <= 1e-9 ? rank : null;
    }

    /// <summary>Per layer and group, KᵀK and VᵀV [t·head_dim]² over the calibration tokens' post-RoPE keys and values.</summary>
    private static (double[][][] Key, double[][][] Value) Calibrate(string directory, ModelConfig c, int groupSize, SvdGqaOptions o)
    {
        int sequence = Math.Min(o.SequenceLength, c.MaxPositionEmbeddings);
        const int blockTokens = 64;
        long bytesPerToken = FullKvCache.BytesPerTokenFor(c);
        var load = new ModelLoadOptions
        {
            BlockTokens = blockTokens,
            CacheBudgetBytes = (sequence + blockTokens - 1) / blockTokens * blockTokens * bytesPerToken,
            ComputeThreads = o.ComputeThreads,
        };

        int groups = c.NumKeyValueHeads / groupSize, width = groupSize * c.HeadDim;
        var key = NewGrams(c.NumHiddenLayers, groups, width);
        var value = NewGrams(c.NumHiddenLayers, groups, width);
        var rng = new SplitMix64((ulong)o.CalibrationSeed);
        var tokens = new int[sequence];
        var logits = new float[c.VocabSize];
        var state = new float[bytesPerToken / sizeof(float)];
        var x = new double[width];
        using var model = LlamaModel.Load(directory, load);
        for (int done = 0; done < o.CalibrationTokens;)
        {
            int n = Math.Min(sequence, o.CalibrationTokens - done);
            for (int i = 0; i < n; i++)
            {
                tokens[i] = o.CalibrationIds is { } ids ? ids[done + i] : (int)(rng.Next() % (ulong)c.VocabSize);
            }

            using var cache = model.CreateCache(FullKvCache.CodecId);
            model.Forward(cache, tokens.AsSpan(0, n), logits);
            for (int t = 0; t < n; t++)
            {
                // Full state per token: for each layer, K then V, each [kvHeads, headDim]; a group's heads are adjacent.
                cache.ReadState(t * bytesPerToken, MemoryMarshal.AsBytes(state.AsSpan()));
                for (int l = 0; l < c.NumHiddenLayers; l++)
                {
                    for (int g = 0; g < groups; g++)
                    {
                        long k = (long)l * 2 * c.KeyValueDim + (long)g * width;
                        Accumulate(state.AsSpan((int)k, width), x, key[l][g]);
                        Accumulate(state.AsSpan((int)(k + c.KeyValueDim), width), x, value[l][g]);
                    }
                }
            }

            done += n;
        }

        return (key, value);
    }

    private static double[][][] NewGrams(int layers, int groups, int width) =>
        Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, groups).Select(_ => new double[width * width]).ToArray()).ToArray();

    /// <summary>gram += v vᵀ, in double.</summary>
    private static void Accumulate(ReadOnlySpan<float> v, double[] x, double[] gram)
    {
        int n = x.Length;
        TensorPrimitives.ConvertChecked<float, double>(v, x);
        for (int a = 0; a < n; a++)
        {
            var row = gram.AsSpan(a * n, n);
            TensorPrimitives.MultiplyAdd(x, x[a], row, row);
        }
    }

    /// <summary>Fills each group's Ψ [width, rank] (row-major) with its gram's top eigenvectors; returns the energy share kept.</summary>
    private static double TopEigenvectors(double[][] grams, int width, int rank, double[][] psi)
    {
        var values = new double[width];
        var vectors = new double[width * width];
        double kept = 0, total = 0;
        for (int g = 0; g < grams.Length; g++)
        {
            SymmetricEigen.Decompose(grams[g], width, values, vectors);
            psi[g] = new double[width * rank];
            for (int a = 0; a < width; a++)
            {
                vectors.AsSpan(a * width, rank).CopyTo(psi[g].AsSpan(a * rank, rank));
            }

            for (int e = 0; e < width; e++)
            {
                double v = Math.Max(values[e], 0);
                total += v;
                kept += e < rank ? v : 0;
            }
        }

        return total > 0 ? kept / total : 1;
    }

    private static void WriteWeights(string sourceDirectory, string outputDirectory, ModelConfig c, double[][][] psiK, double[][][] psiV)
    {
        var svd = c.SvdGqa!;
        int h = c.HiddenSize, d = svd.Rank, t = svd.GroupSize, hd = c.HeadDim, width = t * hd, groups = c.SvdGqaGroups;
        int perKvHead = c.NumAttentionHeads / c.NumKeyValueHeads;
        var tensors = LlamaTensors.List(c);
        var specs = tensors.Select(s => new SafetensorsTensorSpec(s.Name, TensorDtype.F32, s.Shape)).ToArray();
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["converter"] = $"KvCache.SvdGqaConverter ratio={svd.Ratio} group_size={t} rank={d} calibration_tokens={svd.CalibrationTokens} seed={svd.CalibrationSeed}",
        };
        using var reader = SafetensorsReader.Open(Path.Combine(sourceDirectory, "model.safetensors"));
        using var writer = new SafetensorsWriter(Path.Combine(outputDirectory, "model.safetensors"), specs, metadata);
        foreach (var tensor in tensors)
        {
            string name = tensor.Name;
            string prefix = $"model.layers.{tensor.Layer}.";
            float[] values;
            if (name == prefix + "self_attn.v_proj.weight")
            {
                // W_V' row g·d + e = Σ_a Ψ_V,g[a, e] · W_V row g·t·hd + a.
                double[] wv = ToDouble(Read(reader, name, (long)c.KeyValueDim * h));
                values = new float[(long)groups * d * h];
                var acc = new double[h];
                for (int g = 0; g < groups; g++)
                {
                    var psi = psiV[tensor.Layer][g];
                    for (int e = 0; e < d; e++)
                    {
                        Array.Clear(acc);
                        for (int a = 0; a < width; a++)
                        {
                            TensorPrimitives.MultiplyAdd(wv.AsSpan((g * width + a) * h, h), psi[a * d + e], acc, acc);
                        }

                        TensorPrimitives.ConvertTruncating<double, float>(acc, values.AsSpan((g * d + e) * h, h));
                    }
                }
            }
            else if (name == prefix + "self_attn.o_proj.weight")
            {
                // W_O' [h, heads·d]: column i·d + e = Σ_a W_O[:, i·hd + a] · Ψ_V,g[s·hd + a, e] for head i's KV head j = g·t + s.
                float[] wo = Read(reader, name, (long)h * c.QueryDim);
                int heads = c.NumAttentionHeads;
                values = new float[(long)h * heads * d];
                for (int r = 0; r < h; r++)
                {
                    for (int i = 0; i < heads; i++)
                    {
                        int j = i / perKvHead;
                        var psi = psiV[tensor.Layer][j / t];
                        int slot = j % t;
                        for (int e = 0; e < d; e++)
                        {
                            double sum = 0;
                            for (int a = 0; a < hd; a++)
                            {
                                sum += wo[(long)r * c.QueryDim + i * hd + a] * psi[(slot * hd + a) * d + e];
                            }

                            values[(long)r * heads * d + i * d + e] = (float)sum;
                        }
                    }
                }
            }
            else if (name == prefix + LlamaTensors.KeyBasis)
            {
                // Row g·d + e is column e of Ψ_K,g.
                values = new float[(long)groups * d * width];
                for (int g = 0; g < groups; g++)
                {
                    for (int e = 0; e < d; e++)
                    {
                        for (int a = 0; a < width; a++)
                        {
                            values[((long)g * d + e) * width + a] = (float)psiK[tensor.Layer][g][a * d + e];
                        }
                    }
                }
            }
            else
            {
                values = Read(reader, name, tensor.ElementCount);
            }

            writer.Write(values);
        }

        writer.Complete();
    }

    private static float[] Read(SafetensorsReader reader, string name, long count)
    {
        var values = new float[count];
        reader.ReadAsSingle(name, values);
        return values;
    }

    private static double[] ToDouble(ReadOnlySpan<float> values)
    {
        var d = new double[values.Length];
        TensorPrimitives.ConvertChecked<float, double>(values, d);
        return d;
    }
}
