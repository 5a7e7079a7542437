using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>The forward pass over a "fourier" cache (<see cref="FourierKvCache"/>).</summary>
public sealed unsafe partial class LlamaModel
{
    private readonly FourierParts? _fourier;

    /// <summary>
    /// A plain model's fourier parameters: its fourier.json, else the defaults where their coefficients fit a
    /// cache block (a tiny model with tiny blocks then offers "full" only).
    /// </summary>
    private static FourierConfig? FourierFor(string directory, ModelConfig config, ModelLoadOptions options)
    {
        if (config is not { SvdGqa: null, Yoco: null, FusedKv: null })
        {
            return null;
        }

        var fourier = FourierConfig.Load(directory, config);
        bool fits = (long)2 * fourier.Frequencies * fourier.CompressedDims <= options.BlockTokens * KvLayout.Full(config).FloatsPerToken;
        return fits || File.Exists(Path.Combine(directory, FourierConfig.FileName)) ? fourier : null;
    }

    private void ForwardFourier(FourierKvCache cache, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (cache.Owner != this || _fourier is null)
        {
            throw new ArgumentException("The cache was not created by this model.", nameof(cache));
        }

        CheckInput(cache.Position, tokens, logits);

        cache.EnsureCapacity(cache.Position + tokens.Length);
        var scratch = RentScratch();
        try
        {
            for (int start = 0; start < tokens.Length; start += ChunkTokens)
            {
                var chunk = tokens.Slice(start, Math.Min(ChunkTokens, tokens.Length - start));
                ForwardFourierChunk(cache, chunk, scratch);
                cache.Advance(chunk.Length);
            }

            int h = Config.HiddenSize;
            int last = (tokens.Length - 1) % ChunkTokens;
            fixed (float* l = logits)
            {
                _backend.RmsNorm(scratch.X + (long)last * h, _finalNorm, scratch.Normed, 1, h, _eps);
                _backend.MatMul(scratch.Normed, 1, h, _lmHead, Config.VocabSize, l);
            }
        }
        finally
        {
            ReturnScratch(scratch);
        }
    }

    /// <summary>
    /// Like the full cache's chunk, except attention: rows go one at a time (append, which may push a token out of
    /// the window into the coefficients, then attend), so every row sees exactly the state a token-by-token
    /// decode would, whatever the chunking. Matmuls stay batched (they are row-independent).
    /// </summary>
    private void ForwardFourierChunk(FourierKvCache cache, ReadOnlySpan<int> tokens, ForwardScratch s)
    {
        var c = Config;
        var job = _fourier!.Job;
        int n = tokens.Length, h = c.HiddenSize, f = c.IntermediateSize, start = cache.Position;
        _backend.Embed(_embedding, tokens, h, s.X);
        for (int l = 0; l < _layers.Length; l++)
        {
            ref readonly var w = ref _layers[l];
            _backend.RmsNorm(s.X, w.InputNorm, s.Normed, n, h, _eps);
            _backend.MatMul(s.Normed, n, h, w.Q, c.QueryDim, s.Q);
            _backend.MatMul(s.Normed, n, h, w.K, c.KeyValueDim, s.K);
            _backend.MatMul(s.Normed, n, h, w.V, c.KeyValueDim, s.V);
            _backend.Rope(s.Q, n, c.NumAttentionHeads, c.HeadDim, start, _cos, _sin);
            _backend.Rope(s.K, n, c.NumKeyValueHeads, c.HeadDim, start, _cos, _sin);
            for (int r = 0; r < n; r++)
            {
                cache.Append(l, s.K + (long)r * c.KeyValueDim, s.V + (long)r * c.KeyValueDim, start + r);
                lock (_fourier.Gate)
                {
                    // One job serves every fourier cache of the model: concurrent Forward calls take turns.
                    job.Set(cache, l, s.Q + (long)r * c.QueryDim, c.NumAttentionHeads, start + r, _attentionScale, s.Attention + (long)r * c.QueryDim);
                    _backend.Run(job, c.NumAttentionHeads);
                }
            }

            _backend.MatMul(s.Attention, n, c.QueryDim, w.O, h, s.Projected);
            _backend.Add(s.X, s.Projected, (long)n * h);

            _backend.RmsNorm(s.X, w.PostNorm, s.Normed, n, h, _eps);
            _backend.MatMul(s.Normed, n, h, w.Gate, f, s.Gate);
            _backend.MatMul(s.Normed, n, h, w.Up, f, s.Up);
            _backend.SiluMul(s.Gate, s.Up, s.Gate, (long)n * f);
            _backend.MatMul(s.Gate, n, f, w.Down, h, s.Projected);
            _backend.Add(s.X, s.Projected, (long)n * h);
        }
    }

    /// <summary>The model-wide half of the fourier codec: cache shape, dim orders, basis and attention kernel.</summary>
    private sealed class FourierParts(ModelConfig config, FourierConfig fourier, ModelLoadOptions options, KvBlockPool pool) : IDisposable
    {
        public FourierLayout Layout { get; } = new(config, fourier, options.BlockTokens, pool.BlockFloats);

        public Lock Gate { get; } = new();

        public FourierAttentionJob Job { get; } = new(options.ComputeThreads, config.MaxPositionEmbeddings, config.HeadDim, 2 * fourier.Frequencies);

        public void Dispose()
        {
            Layout.Dispose();
            Job.Dispose();
        }
    }
}
