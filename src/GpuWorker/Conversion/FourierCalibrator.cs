using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>Settings of <see cref="FourierCalibrator.Calibrate"/>.</summary>
public sealed record FourierCalibrationOptions
{
    /// <summary>Share of each KV head's dimensions to compress.</summary>
    public double DimsFraction { get; init; } = 0.5;

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
/// codec's basis (period T, 2k functions, as the cache does) and measures the squared reconstruction error; the m
/// dims with the lowest error are compressed.
/// </summary>
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

        int m = FourierConfig.CompressedCount(c, options.DimsFraction);
        var plan = new FourierConfig
        {
            Window = options.Window,
            Frequencies = options.Frequencies,
            Horizon = options.Horizon ?? FourierConfig.DefaultHorizon(c, options.Window, options.Frequencies),
            DimsFraction = options.DimsFraction,
            KeyDims = [],
            ValueDims = [],
        };
        var errors = Errors(directory, c, plan, options);
        int[][][] Choose(int side) => Enumerable.Range(0, c.NumHiddenLayers).Select(l => Enumerable.Range(0, c.NumKeyValueHeads)
            .Select(h => Enumerable.Range(0, c.HeadDim).OrderBy(d => errors[l, side, h, d]).ThenBy(d => d).Take(m).Order().ToArray()).ToArray()).ToArray();
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
}
