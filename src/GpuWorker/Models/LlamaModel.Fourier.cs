using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>The forward pass over a "fourier" cache (<see cref="FourierKvCache"/>).</summary>
public sealed unsafe partial class LlamaModel
{
    private readonly FourierParts? _fourier;

    /// <summary>
    /// A plain model's fourier parameters: its fourier.json, else the defaults where their coefficients fit a
    /// cache block (a tiny model with tiny blocks then offers "full" only). The fourier cache is f32: with bf16 caches
    /// a plain model offers "full" only, and a calibrated one refuses to load rather than drop its calibration.
    /// </summary>
    /// <exception cref="ArgumentException">bf16 caches for a model with a fourier.json.</exception>
    private static FourierConfig? FourierFor(string directory, ModelConfig config, ModelLoadOptions options)
    {
        if (config is not { SvdGqa: null, Yoco: null, FusedKv: null })
        {
            return null;
        }

        bool calibrated = File.Exists(Path.Combine(directory, FourierConfig.FileName));
        if (options.CacheFormat != KvCacheFormat.F32)
        {
            return calibrated
                ? throw new ArgumentException(
                    $"{directory}: a fourier-calibrated model keeps f32 caches; load it with CacheFormat {KvCacheFormat.F32}, not {options.CacheFormat}.",
                    nameof(options))
                : null;
        }

        var fourier = FourierConfig.Load(directory, config);
        bool fits = (long)2 * fourier.Frequencies * fourier.MaxCompressedDims <= options.BlockTokens * KvLayout.Full(config).ElementsPerToken;
        return fits || calibrated ? fourier : null;
    }

    /// <summary>
    /// A fourier segment's attention in one layer: rows go one at a time (append, which may push a token out of the
    /// window into the coefficients, then attend), so every row sees exactly the state a token-by-token decode would,
    /// whatever the chunking.
    /// </summary>
    private void FourierAttention(FourierKvCache cache, int layer, in PassSegment seg, ForwardScratch s)
    {
        if (_fourier is null)
        {
            throw new InvalidOperationException("A fourier cache in a model without fourier parameters.");
        }

        var c = Config;
        for (int r = seg.Row; r < seg.Row + seg.Count; r++)
        {
            int position = seg.Start + r - seg.Row;
            cache.Append(layer, s.K + (long)r * c.KeyValueDim, s.V + (long)r * c.KeyValueDim, position);
            lock (_fourier.Gate)
            {
                // One job serves every fourier cache of the model: concurrent passes take turns.
                _fourier.Job.Set(cache, layer, s.Q + (long)r * c.QueryDim, position, _attentionScale, s.Attention + (long)r * c.QueryDim);
                _backend.Run(_fourier.Job, _fourier.Job.Items);
            }
        }
    }

    /// <summary>The model-wide half of the fourier codec: cache shape, dim orders, basis and attention kernel.</summary>
    private sealed class FourierParts(ModelConfig config, FourierConfig fourier, ModelLoadOptions options, KvBlockPool pool) : IDisposable
    {
        public FourierLayout Layout { get; } = new(config, fourier, options.BlockTokens, pool.BlockFloats);

        public Lock Gate { get; } = new();

        public FourierAttentionJob Job { get; } = new(options.ComputeThreads, config.NumAttentionHeads, config.MaxPositionEmbeddings, config.HeadDim, 2 * fourier.Frequencies);

        public void Dispose()
        {
            Layout.Dispose();
            Job.Dispose();
        }
    }
}
