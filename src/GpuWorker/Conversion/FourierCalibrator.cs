using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>Settings of <see cref="FourierCalibrator.Calibrate"/>.</summary>
public sealed record FourierCalibrationOptions
{
    /// <summary>Share of each KV head's dimensions to compress (the mean over layers with <see cref="FourierDimensionRule.PreRopeLayered"/>).</summary>
    public double DimsFraction { get; init; } = 0.5;

    /// <summary>
    /// How the dims are chosen. The default stays <see cref="FourierDimensionRule.PostRope"/>, the rule calibrated
    /// models were made with; <see cref="FourierDimensionRule.PreRopeLayered"/> is the paper's.
    /// </summary>
    public FourierDimensionRule Rule { get; init; } = FourierDimensionRule.PostRope;

    /// <summary>With <see cref="FourierDimensionRule.PreRopeLayered"/>, how far the layers' shares spread around DimsFraction (see <see cref="FourierConfig.LayerSpread"/>).</summary>
    public double LayerSpread { get; init; } = 0.5;

    /// <summary>Frequencies k (2k coefficients per compressed dimension).</summary>
    public int Frequencies { get; init; } = 32;

    /// <summary>Exact recent tokens W.</summary>
    public int Window { get; init; } = 1024;

    /// <summary>Basis period T; null: <see cref="FourierConfig.DefaultHorizon"/>.</summary>
    public int? Horizon { get; init; }

    /// <summary>Length of the calibration sequence (capped at max positions).</summary>
    public int CalibrationTokens { get; init; } = 2048;

    public long CalibrationSeed { get; init; } = 1;

    /// <summary>Real calibration token ids read in order instead of generated ones; at least the sequence's length.</summary>
    public IReadOnlyList<int>? CalibrationIds { get; init; }

    public int ComputeThreads { get; init; } = Environment.ProcessorCount;
}

/// <summary>
/// Chooses FourierAttention's compressed dimensions offline: runs the model over one generated sequence (SplitMix64
/// from the seed, uniform over the vocabulary, or the given <see cref="FourierCalibrationOptions.CalibrationIds"/>),
/// and for every layer, K/V side, KV head and dimension projects that dimension's values at positions init.. on the
/// codec's basis (period T, 2k functions, as the cache does) and measures the squared reconstruction error; the m_l
/// dims with the lowest error are compressed.
/// </summary>
/// <remarks>
/// <see cref="FourierDimensionRule.PostRope"/> measures the keys as cached (post-RoPE) and takes the same m in every
/// layer. <see cref="FourierDimensionRule.PreRopeLayered"/>, the paper's rule, measures keys before RoPE (the cached
/// keys rotated back by their position's angles, in double) and takes m_l from
/// <see cref="FourierConfig.LayerCompressedCounts"/>: more in the first layers, less in the last. Values carry no RoPE,
/// so both rules measure them alike. Either way the cache then compresses the chosen dims of the post-RoPE keys it holds.
/// </remarks>
public static class FourierCalibrator
{
    /// <summary>Writes <c>fourier.json</c> into <paramref name="directory"/> (beside config.json) and returns it.</summary>
    /// <exception cref="ArgumentException">The model is not a plain Llama model, or the options do not fit it.</exception>
    public static FourierConfig Calibrate(string directory, FourierCalibrationOptions options)
    {
        var c = ModelConfig.Load(Path.Combine(directory, "config.json"));
        if (c is not { SvdGqa: null, Yoco: null, FusedKv: null })
        {
            throw new ArgumentException("FourierAttention calibrates plain Llama models only.");
        }

        bool paper = options.Rule == FourierDimensionRule.PreRopeLayered;
        int[] counts = paper
            ? FourierConfig.LayerCompressedCounts(c, options.DimsFraction, options.LayerSpread)
            : Enumerable.Repeat(FourierConfig.CompressedCount(c, options.DimsFraction), c.NumHiddenLayers).ToArray();
        var plan = new FourierConfig
        {
            Window = options.Window,
            Frequencies = options.Frequencies,
            Horizon = options.Horizon ?? FourierConfig.DefaultHorizon(c, options.Window, options.Frequencies),
            DimsFraction = options.DimsFraction,
            Rule = options.Rule,
            LayerSpread = paper ? options.LayerSpread : 0,
            KeyDims = [],
            ValueDims = [],
        };
        var errors = Errors(directory, c, plan, options);
        int[][][] Choose(int side) => Enumerable.Range(0, c.NumHiddenLayers).Select(l => Enumerable.Range(0, c.NumKeyValueHeads)
            .Select(h => Enumerable.Range(0, c.HeadDim).OrderBy(d => errors[l, side, h, d]).ThenBy(d => d).Take(counts[l]).Order().ToArray()).ToArray()).ToArray();
        var config = plan with
        {
            KeyDims = Choose(0),
            ValueDims = Choose(1),
            CalibrationTokens = Math.Min(options.CalibrationTokens, c.MaxPositionEmbeddings),
            CalibrationSeed = options.CalibrationSeed,
        };
        config.Validate(c);
        config.Write(directory);
        return config;
    }

    /// <summary>Squared reconstruction error per [layer, side, kvHead, dim].</summary>
    private static double[,,,] Errors(string directory, ModelConfig c, FourierConfig plan, FourierCalibrationOptions o)
    {
        int n = Math.Min(o.CalibrationTokens, c.MaxPositionEmbeddings);
        int middle = n - plan.InitTokens;
        if (middle <= 2 * plan.Frequencies)
        {
            throw new ArgumentException($"{n} calibration tokens leave too few middle tokens for {2 * plan.Frequencies} coefficients.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(o.CalibrationIds?.Count ?? int.MaxValue, n, nameof(o.CalibrationIds));
        const int blockTokens = 64;
        long bytesPerToken = FullKvCache.BytesPerTokenFor(c);
        var load = new ModelLoadOptions
        {
            BlockTokens = blockTokens,
            CacheBudgetBytes = (n + blockTokens - 1) / blockTokens * blockTokens * bytesPerToken,
            ComputeThreads = o.ComputeThreads,
        };
        var rng = new SplitMix64((ulong)o.CalibrationSeed);
        var tokens = new int[n];
        for (int i = 0; i < n; i++)
        {
            tokens[i] = o.CalibrationIds is { } ids ? ids[i] : (int)(rng.Next() % (ulong)c.VocabSize);
        }

        // values[t, l, side, h, d], from the full cache's token-major state.
        var state = new float[(long)n * bytesPerToken / sizeof(float)];
        using (var model = LlamaModel.Load(directory, load))
        using (var cache = model.CreateCache(FullKvCache.CodecId))
        {
            model.Forward(cache, tokens, new float[c.VocabSize]);
            cache.ReadState(0, MemoryMarshal.AsBytes(state.AsSpan()));
        }

        if (o.Rule == FourierDimensionRule.PreRopeLayered)
        {
            UnrotateKeys(state, c, n);
        }

        int coefficients = 2 * plan.Frequencies, perToken = (int)(bytesPerToken / sizeof(float));
        var basis = new double[middle, coefficients];
        for (int u = 0; u < middle; u++)
        {
            for (int j = 0; j < coefficients; j++)
            {
                basis[u, j] = FourierLayout.BasisValue(j, u % plan.Horizon, plan.Horizon);
            }
        }

        var errors = new double[c.NumHiddenLayers, 2, c.NumKeyValueHeads, c.HeadDim];
        Parallel.For(0, c.NumHiddenLayers * 2 * c.NumKeyValueHeads * c.HeadDim, new ParallelOptions { MaxDegreeOfParallelism = o.ComputeThreads }, () => (new double[middle], new double[coefficients]), (index, _, buffers) =>
        {
            var (values, coefficient) = buffers;
            int d = index % c.HeadDim, piece = index / c.HeadDim;
            for (int u = 0; u < middle; u++)
            {
                values[u] = state[(long)(plan.InitTokens + u) * perToken + (long)piece * c.HeadDim + d];
            }

            // The cache's incremental projection: c_j = Σ_u x_u φ_j(u), x̂_u = Σ_j c_j φ_j(u).
            Array.Clear(coefficient);
            for (int u = 0; u < middle; u++)
            {
                for (int j = 0; j < coefficients; j++)
                {
                    coefficient[j] += values[u] * basis[u, j];
                }
            }

            double error = 0;
            for (int u = 0; u < middle; u++)
            {
                double r = values[u];
                for (int j = 0; j < coefficients; j++)
                {
                    r -= coefficient[j] * basis[u, j];
                }

                error += r * r;
            }

            int l = piece / (2 * c.NumKeyValueHeads), side = piece / c.NumKeyValueHeads % 2, h = piece % c.NumKeyValueHeads;
            errors[l, side, h, d] = error;
            return buffers;
        }, _ => { });
        return errors;
    }

    /// <summary>
    /// Turns the full cache's post-RoPE keys back into pre-RoPE ones: rotate-half pair (i, i + d/2) at position t was
    /// turned by t · theta^(−2i/d), so turning it by the opposite angle (computed in double) recovers it.
    /// </summary>
    private static void UnrotateKeys(float[] state, ModelConfig c, int tokens)
    {
        int d = c.HeadDim, half = d / 2, perToken = 2 * c.NumHiddenLayers * c.KeyValueDim;
        for (int t = 0; t < tokens; t++)
        {
            for (int i = 0; i < half; i++)
            {
                double angle = t / Math.Pow(c.RopeTheta, 2.0 * i / d);
                double cos = Math.Cos(angle), sin = Math.Sin(angle);
                for (int l = 0; l < c.NumHiddenLayers; l++)
                {
                    for (int h = 0; h < c.NumKeyValueHeads; h++)
                    {
                        // [token][layer][K|V][kvHead][dim]: side 0 is K.
                        long at = (long)t * perToken + ((long)l * 2 * c.NumKeyValueHeads + h) * d;
                        double a = state[at + i], b = state[at + i + half];
                        state[at + i] = (float)(a * cos + b * sin);
                        state[at + i + half] = (float)(b * cos - a * sin);
                    }
                }
            }
        }
    }
}
