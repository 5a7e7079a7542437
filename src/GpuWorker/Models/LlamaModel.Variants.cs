using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.GpuWorker;

/// <summary>
/// The YOCO (<see cref="YocoConfig"/>, codec "yoco", <see cref="YocoKvCache"/>) and FusedKV
/// (<see cref="FusedKvConfig"/>, codecs "fusedkv" / "fusedkv-lite", <see cref="FusedKvCache"/>) architectures.
/// </summary>
/// <remarks>
/// YOCO prefill runs the cross-decoder for the last token of a Forward call only: the cache (rings and K̂V̂) depends
/// on the self-decoder alone, so skipping the cross-decoder for the other tokens changes neither the cache nor the
/// logits, and any chunking stays bit-identical.
/// </remarks>
public sealed unsafe partial class LlamaModel
{
    private readonly VariantWeights _variant;

    private static (string Codec, KvLayout Layout)? VariantCodec(ModelConfig c) => c switch
    {
        // A pool block holds BlockTokens global K̂V̂ vectors; the rings are made of the same blocks.
        { Yoco: not null } => (YocoKvCache.CodecId, new KvLayout(1, c.NumKeyValueHeads, c.HeadDim)),
        { FusedKv: { } f } => (f.CodecId, FusedKvCache.Layout(c)),
        _ => null,
    };

    private void ForwardYoco(YocoKvCache cache, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (cache.Owner != this)
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
                YocoSelfDecoderChunk(cache, cache.Position, chunk, scratch);
                cache.Advance(chunk.Length);
            }

            int h = Config.HiddenSize;
            float* x = scratch.X + (long)((tokens.Length - 1) % ChunkTokens) * h;
            YocoCrossDecoder(cache.Global, cache.Position - 1, x, scratch);
            fixed (float* l = logits)
            {
                _backend.RmsNorm(x, _finalNorm, scratch.Normed, 1, h, _eps);
                _backend.MatMul(scratch.Normed, 1, h, _lmHead, Config.VocabSize, l);
            }
        }
        finally
        {
            ReturnScratch(scratch);
        }
    }

    /// <summary>The argument checks every codec's Forward makes before touching its cache.</summary>
    private void CheckInput(int position, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (tokens.IsEmpty)
        {
            throw new ArgumentException("At least one token is needed.", nameof(tokens));
        }

        if (logits.Length < Config.VocabSize)
        {
            throw new ArgumentException($"Logits need {Config.VocabSize} elements, got {logits.Length}.", nameof(logits));
        }

        foreach (int t in tokens)
        {
            if ((uint)t >= (uint)Config.VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), t, $"Token id outside the vocabulary [0, {Config.VocabSize}).");
            }
        }

        if (position + tokens.Length > Config.MaxPositionEmbeddings)
        {
            throw new ArgumentOutOfRangeException(
                nameof(tokens), $"Position {position} + {tokens.Length} tokens exceeds max positions {Config.MaxPositionEmbeddings}.");
        }
    }

    /// <summary>Self-decoder layers (sliding window over the rings), then the chunk's global K̂V̂ into the cache.</summary>
    private void YocoSelfDecoderChunk(YocoKvCache cache, int start, ReadOnlySpan<int> tokens, ForwardScratch s)
    {
        var c = Config;
        int n = tokens.Length, h = c.HiddenSize, window = cache.Window;
        _backend.Embed(_embedding, tokens, h, s.X);
        for (int l = 0; l < _layers.Length / 2; l++)
        {
            ref readonly var w = ref _layers[l];
            ProjectQkv(w, n, start, s);
            var ring = cache.Ring(l);

            // Attend before storing: the chunk's later rows would overwrite ring slots its earlier rows still need.
            _backend.SlidingAttention(ring, s.Q, s.K, s.V, n, c.NumAttentionHeads, start, window, _attentionScale, s.Attention);
            _backend.StoreRing(ring, s.K, s.V, n, start, window);
            OutputAndMlp(w, s.X, n, s);
        }

        _backend.RmsNorm(s.X, _variant.CrossKvNorm, s.Normed, n, h, _eps);
        _backend.MatMul(s.Normed, n, h, _variant.CrossKvK, c.KeyValueDim, s.K);
        _backend.MatMul(s.Normed, n, h, _variant.CrossKvV, c.KeyValueDim, s.V);
        _backend.Rope(s.K, n, c.NumKeyValueHeads, c.HeadDim, start, _cos, _sin);
        _backend.StoreKv(cache.Global, 0, s.K, s.V, n, start);
    }

    /// <summary>Cross-decoder layers for one token at <paramref name="position"/> (residual row x), over the global K̂V̂.</summary>
    private void YocoCrossDecoder(in KvView global, int position, float* x, ForwardScratch s)
    {
        var c = Config;
        for (int l = _layers.Length / 2; l < _layers.Length; l++)
        {
            ref readonly var w = ref _layers[l];
            _backend.RmsNorm(x, w.InputNorm, s.Normed, 1, c.HiddenSize, _eps);
            _backend.MatMul(s.Normed, 1, c.HiddenSize, w.Q, c.QueryDim, s.Q);
            _backend.Rope(s.Q, 1, c.NumAttentionHeads, c.HeadDim, position, _cos, _sin);
            _backend.Attention(global, 0, s.Q, 1, c.NumAttentionHeads, position, _attentionScale, s.Attention);
            OutputAndMlp(w, x, 1, s);
        }
    }

    /// <summary>FusedKV: the lower half caches its K, V; the upper half attends over keys and values fused from them.</summary>
    private void ForwardFusedChunk(in KvView view, int start, ReadOnlySpan<int> tokens, ForwardScratch s)
    {
        var c = Config;
        int n = tokens.Length, half = _layers.Length / 2;
        _backend.Embed(_embedding, tokens, c.HiddenSize, s.X);
        for (int l = 0; l < _layers.Length; l++)
        {
            ref readonly var w = ref _layers[l];
            if (l < half)
            {
                ProjectQkv(w, n, start, s);
                _backend.StoreKv(view, l, s.K, s.V, n, start);
                _backend.Attention(view, l, s.Q, n, c.NumAttentionHeads, start, _attentionScale, s.Attention);
            }
            else
            {
                _backend.RmsNorm(s.X, w.InputNorm, s.Normed, n, c.HiddenSize, _eps);
                _backend.MatMul(s.Normed, n, c.HiddenSize, w.Q, c.QueryDim, s.Q);
                _backend.Rope(s.Q, n, c.NumAttentionHeads, c.HeadDim, start, _cos, _sin);
                _backend.FusedAttention(view, _variant.Fusion![l - half], s.Q, n, c.NumAttentionHeads, start, _attentionScale, s.Attention);
            }

            OutputAndMlp(w, s.X, n, s);
        }
    }

    /// <summary>Normed input, then post-RoPE Q, K, V of n rows at positions start.. (rows of s.X).</summary>
    private void ProjectQkv(in LayerWeights w, int n, int start, ForwardScratch s)
    {
        var c = Config;
        int h = c.HiddenSize;
        _backend.RmsNorm(s.X, w.InputNorm, s.Normed, n, h, _eps);
        _backend.MatMul(s.Normed, n, h, w.Q, c.QueryDim, s.Q);
        _backend.MatMul(s.Normed, n, h, w.K, c.KeyValueDim, s.K);
        _backend.MatMul(s.Normed, n, h, w.V, c.KeyValueDim, s.V);
        _backend.Rope(s.Q, n, c.NumAttentionHeads, c.HeadDim, start, _cos, _sin);
        _backend.Rope(s.K, n, c.NumKeyValueHeads, c.HeadDim, start, _cos, _sin);
    }

    /// <summary>x += o_proj(s.Attention); x += mlp(post-norm x), for n rows of x.</summary>
    private void OutputAndMlp(in LayerWeights w, float* x, int n, ForwardScratch s)
    {
        var c = Config;
        int h = c.HiddenSize, f = c.IntermediateSize;
        _backend.MatMul(s.Attention, n, c.QueryDim, w.O, h, s.Projected);
        _backend.Add(x, s.Projected, (long)n * h);
        _backend.RmsNorm(x, w.PostNorm, s.Normed, n, h, _eps);
        _backend.MatMul(s.Normed, n, h, w.Gate, f, s.Gate);
        _backend.MatMul(s.Normed, n, h, w.Up, f, s.Up);
        _backend.SiluMul(s.Gate, s.Up, s.Gate, (long)n * f);
        _backend.MatMul(s.Gate, n, f, w.Down, h, s.Projected);
        _backend.Add(x, s.Projected, (long)n * h);
    }

    /// <summary>YOCO's global K̂V̂ projections, or FusedKV's per-upper-layer fusion; empty for other models.</summary>
    private struct VariantWeights
    {
        public float* CrossKvNorm, CrossKvK, CrossKvV;
        public KvFusion[]? Fusion;

        /// <exception cref="InvalidDataException">Key fusion weights differ within a RoPE pair.</exception>
        public static VariantWeights Load(ModelConfig c, Dictionary<string, nint> tensors)
        {
            var v = default(VariantWeights);
            if (c.Yoco is not null)
            {
                v.CrossKvNorm = (float*)tensors[VariantTensors.CrossKvNorm];
                v.CrossKvK = (float*)tensors[VariantTensors.CrossKvK];
                v.CrossKvV = (float*)tensors[VariantTensors.CrossKvV];
            }

            if (c.FusedKv is { } fused)
            {
                int half = c.NumHiddenLayers / 2;
                v.Fusion = new KvFusion[c.NumHiddenLayers - half];
                for (int i = half; i < c.NumHiddenLayers; i++)
                {
                    string p = $"model.layers.{i}.";
                    v.Fusion[i - half] = fused.Lite
                        ? new KvFusion(0, half - 1, null, null)
                        : new KvFusion(0, half - 1, PairedKeyWeights(tensors, p + VariantTensors.KeyFusion, c), (float*)tensors[p + VariantTensors.ValueFusion]);
                }
            }

            return v;
        }

        private static float* PairedKeyWeights(Dictionary<string, nint> tensors, string name, ModelConfig c)
        {
            float* a = (float*)tensors[name];
            int hd = c.HeadDim, half = hd / 2;
            var values = new ReadOnlySpan<float>(a, 2 * c.KeyValueDim);
            for (int v = 0; v < values.Length; v += hd)
            {
                if (!values.Slice(v, half).SequenceEqual(values.Slice(v + half, half)))
                {
                    throw new InvalidDataException($"{name}: the weights of channels j and j + head_dim/2 (one RoPE pair) must be equal.");
                }
            }

            return a;
        }
    }
}
