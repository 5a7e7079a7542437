using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.GpuWorker;

/// <summary>
/// The YOCO (<see cref="YocoConfig"/>, codec "yoco", <see cref="YocoKvCache"/>) and FusedKV
/// (<see cref="FusedKvConfig"/>, codecs "fusedkv" / "fusedkv-lite", <see cref="FusedKvCache"/>) architectures.
/// </summary>
/// <remarks>
/// YOCO runs the cross-decoder only for rows whose logits are wanted (a prefill's last token, each decode row): the cache (rings and K̂V̂) depends
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

    private void CheckLogits(int length)
    {
        if (length < Config.VocabSize)
        {
            throw new ArgumentException($"Logits need {Config.VocabSize} elements, got {length}.", "logits");
        }
    }

    /// <summary>The argument checks every codec's forward pass makes before touching its cache.</summary>
    private void CheckInput(int position, ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty)
        {
            throw new ArgumentException("At least one token is needed.", nameof(tokens));
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

    /// <summary>
    /// Self-decoder layers (sliding window over each cache's rings, or gated retention over its states), then every
    /// row's global K̂V̂ into its cache.
    /// </summary>
    private void YocoSelfDecoder(ForwardScratch s)
    {
        var c = Config;
        int n = s.Rows, h = c.HiddenSize, heads = c.NumAttentionHeads;
        for (int l = 0; l < _layers.Length / 2; l++)
        {
            ref readonly var w = ref _layers[l];
            if (c.Yoco!.SelfDecoder == GpuWorker.YocoSelfDecoder.GatedRetention)
            {
                GatedRetentionLayer(l, w, s);
                continue;
            }

            ProjectQkv(w, s);
            for (int i = 0; i < s.SegmentCount; i++)
            {
                ref readonly var seg = ref s.Segments[i];
                var cache = (YocoKvCache)seg.Cache;
                var ring = cache.Ring(l);
                long q = (long)seg.Row * c.QueryDim, kv = (long)seg.Row * c.KeyValueDim;

                // Attend before storing: a segment's later rows would overwrite ring slots its earlier rows still need.
                _backend.SlidingAttention(ring, s.Q + q, s.K + kv, s.V + kv, seg.Count, heads, seg.Start, cache.Window, _attentionScale, s.Attention + q);
                _backend.StoreRing(ring, s.K + kv, s.V + kv, seg.Count, seg.Start, cache.Window);
            }

            OutputAndMlp(w, s.X, n, s);
        }

        _backend.RmsNorm(s.X, _variant.CrossKvNorm, s.Normed, n, h, _eps);
        _backend.MatMul(s.Normed, n, h, _variant.CrossKvK, c.KeyValueDim, s.K);
        _backend.MatMul(s.Normed, n, h, _variant.CrossKvV, c.KeyValueDim, s.V);
        RopeSegments(s, s.K, c.NumKeyValueHeads);
        for (int i = 0; i < s.SegmentCount; i++)
        {
            ref readonly var seg = ref s.Segments[i];
            long kv = (long)seg.Row * c.KeyValueDim;
            _backend.StoreKv(((YocoKvCache)seg.Cache).Global, 0, s.K + kv, s.V + kv, seg.Count, seg.Start);
        }
    }

    /// <summary>A gated-retention self-decoder layer (see <see cref="YocoConfig"/>): each segment advances its cache's states.</summary>
    private void GatedRetentionLayer(int layer, in LayerWeights w, ForwardScratch s)
    {
        var c = Config;
        int n = s.Rows, h = c.HiddenSize, heads = c.NumAttentionHeads, width = c.QueryDim;
        _backend.RmsNorm(s.X, w.InputNorm, s.Normed, n, h, _eps);
        _backend.MatMul(s.Normed, n, h, w.Q, width, s.Q);
        _backend.MatMul(s.Normed, n, h, w.K, width, s.K);
        _backend.MatMul(s.Normed, n, h, w.V, width, s.V);
        _backend.MatMul(s.Normed, n, h, w.RetentionGate, width, s.RetentionGate);
        _backend.MatMul(s.Normed, n, h, w.RetentionDecay, heads, s.DecayLogits);
        RopeSegments(s, s.Q, heads);
        RopeSegments(s, s.K, heads);
        float normalizer = (float)c.Yoco!.GateLogitNormalizer;
        for (int i = 0; i < s.SegmentCount; i++)
        {
            ref readonly var seg = ref s.Segments[i];
            long at = (long)seg.Row * width;
            _backend.GatedRetention(((YocoKvCache)seg.Cache).Retention(layer), s.Q + at, s.K + at, s.V + at,
                s.DecayLogits + (long)seg.Row * heads, seg.Count, heads, normalizer, _eps, s.Attention + at);
        }

        _backend.SiluMul(s.RetentionGate, s.Attention, s.Attention, (long)n * width);
        OutputAndMlp(w, s.X, n, s);
    }

    /// <summary>
    /// Cross-decoder layers for the top <paramref name="rows"/> rows of X (the rows whose logits are wanted, one per
    /// segment in order), each at its segment's last position over its cache's global K̂V̂.
    /// </summary>
    private void YocoCrossDecoder(ForwardScratch s, int rows)
    {
        var c = Config;
        var attend = s.Attend;
        attend.Clear();
        for (int i = 0; i < s.SegmentCount; i++)
        {
            ref readonly var seg = ref s.Segments[i];
            int head = seg.HeadRows;
            for (int r = seg.Count - head; r < seg.Count; r++)
            {
                attend.Add(attend.Count, ((YocoKvCache)seg.Cache).Global, seg.Start + r);
            }
        }

        for (int l = _layers.Length / 2; l < _layers.Length; l++)
        {
            ref readonly var w = ref _layers[l];
            _backend.RmsNorm(s.X, w.InputNorm, s.Normed, rows, c.HiddenSize, _eps);
            _backend.MatMul(s.Normed, rows, c.HiddenSize, w.Q, c.QueryDim, s.Q);
            for (int r = 0; r < rows; r++)
            {
                _backend.Rope(s.Q + (long)r * c.QueryDim, 1, c.NumAttentionHeads, c.HeadDim, attend.Positions[r], _cos, _sin);
            }

            _backend.Attention(attend, 0, s.Q, c.NumAttentionHeads, _attentionScale, s.Attention);
            OutputAndMlp(w, s.X, rows, s);
        }
    }

    /// <summary>A FusedKV upper layer: attends over keys and values fused from the lower half's first and last layers.</summary>
    private void FusedUpperLayer(in LayerWeights w, in KvFusion fusion, ForwardScratch s)
    {
        var c = Config;
        int n = s.Rows;
        _backend.RmsNorm(s.X, w.InputNorm, s.Normed, n, c.HiddenSize, _eps);
        _backend.MatMul(s.Normed, n, c.HiddenSize, w.Q, c.QueryDim, s.Q);
        RopeSegments(s, s.Q, c.NumAttentionHeads);
        for (int i = 0; i < s.SegmentCount; i++)
        {
            ref readonly var seg = ref s.Segments[i];
            long q = (long)seg.Row * c.QueryDim;
            _backend.FusedAttention(((PagedKvCache)seg.Cache).View, fusion, s.Q + q, seg.Count, c.NumAttentionHeads, seg.Start, _attentionScale, s.Attention + q);
        }

        OutputAndMlp(w, s.X, n, s);
    }

    /// <summary>
    /// Normed input, then post-RoPE Q, K and V of the pass's rows (rows of s.X). V is as wide as the cache's value
    /// side: rank-wide for SVD-GQA, whose W_V' already projects into the rank.
    /// </summary>
    private void ProjectQkv(in LayerWeights w, ForwardScratch s)
    {
        var c = Config;
        int h = c.HiddenSize, n = s.Rows;
        _backend.RmsNorm(s.X, w.InputNorm, s.Normed, n, h, _eps);
        _backend.MatMul(s.Normed, n, h, w.Q, c.QueryDim, s.Q);
        _backend.MatMul(s.Normed, n, h, w.K, c.KeyValueDim, s.K);
        _backend.MatMul(s.Normed, n, h, w.V, _layout.Heads * _layout.Dim, s.V);
        RopeSegments(s, s.Q, c.NumAttentionHeads);
        RopeSegments(s, s.K, c.NumKeyValueHeads);
    }

    /// <summary>x += o_proj(s.Attention); x += mlp(post-norm x), for n rows of x.</summary>
    private void OutputAndMlp(in LayerWeights w, float* x, int n, ForwardScratch s)
    {
        var c = Config;
        int h = c.HiddenSize, f = c.IntermediateSize;
        _backend.MatMul(s.Attention, n, c.NumAttentionHeads * _layout.Dim, w.O, h, s.Projected);
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
        public float* CrossKvNorm;
        public LinearWeight CrossKvK, CrossKvV;
        public KvFusion[]? Fusion;

        /// <exception cref="InvalidDataException">Key fusion weights differ within a RoPE pair.</exception>
        public static VariantWeights Load(ModelConfig c, LoadedTensors tensors)
        {
            var v = default(VariantWeights);
            if (c.Yoco is not null)
            {
                v.CrossKvNorm = tensors.F32(VariantTensors.CrossKvNorm);
                v.CrossKvK = tensors.Linear(VariantTensors.CrossKvK);
                v.CrossKvV = tensors.Linear(VariantTensors.CrossKvV);
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
                        : new KvFusion(0, half - 1, PairedKeyWeights(tensors, p + VariantTensors.KeyFusion, c), tensors.F32(p + VariantTensors.ValueFusion));
                }
            }

            return v;
        }

        private static float* PairedKeyWeights(LoadedTensors tensors, string name, ModelConfig c)
        {
            float* a = tensors.F32(name);
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
