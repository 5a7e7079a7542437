namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Weights of the YOCO and FusedKV architectures (<see cref="YocoConfig"/>, <see cref="FusedKvConfig"/>): Llama layers
/// whose upper half lacks k_proj / v_proj, plus YOCO's global K̂V̂ projections or FusedKV's fusion weights.
/// </summary>
internal static class VariantTensors
{
    public const string CrossKvNorm = "model.cross_kv.norm.weight";
    public const string CrossKvK = "model.cross_kv.k_proj.weight";
    public const string CrossKvV = "model.cross_kv.v_proj.weight";

    /// <summary>A gated-retention self-decoder layer's output gate W_G [heads · head_dim, hidden] (swish(x W_G) ⊙ o).</summary>
    public const string RetentionGate = "self_attn.g_proj.weight";

    /// <summary>A gated-retention self-decoder layer's decay gate W_γ [heads, hidden] (γ = sigmoid(x W_γ)^(1/τ)).</summary>
    public const string RetentionDecay = "self_attn.gt_proj.weight";

    /// <summary>Per fused layer, rows a_i1 and a_in [2, num_key_value_heads · head_dim].</summary>
    public const string KeyFusion = "self_attn.k_fusion.weight";

    /// <summary>Per fused layer, rows b_i1 and b_in [2, num_key_value_heads · head_dim].</summary>
    public const string ValueFusion = "self_attn.v_fusion.weight";

    /// <summary>
    /// Canonical order: embedding; per layer the Llama tensors (k_proj / v_proj only in the lower half, fusion
    /// weights after o_proj in FusedKV's upper half); YOCO's cross_kv tensors after the self-decoder; final norm; lm_head.
    /// A gated-retention self-decoder layer has heads-wide k_proj / v_proj and its g_proj, gt_proj after v_proj.
    /// </summary>
    public static IReadOnlyList<LlamaTensor> List(ModelConfig c)
    {
        int h = c.HiddenSize, half = c.NumHiddenLayers / 2;
        bool retention = c.Yoco is { SelfDecoder: YocoSelfDecoder.GatedRetention };
        var list = new List<LlamaTensor> { new(LlamaTensors.Embedding, [c.VocabSize, h], TensorRole.Embedding, -1) };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            list.Add(new(p + "input_layernorm.weight", [h], TensorRole.Norm, i));
            list.Add(new(p + "self_attn.q_proj.weight", [c.QueryDim, h], TensorRole.Linear, i));
            if (i < half && retention)
            {
                list.Add(new(p + "self_attn.k_proj.weight", [c.QueryDim, h], TensorRole.Linear, i));
                list.Add(new(p + "self_attn.v_proj.weight", [c.QueryDim, h], TensorRole.Linear, i));
                list.Add(new(p + RetentionGate, [c.QueryDim, h], TensorRole.Linear, i));
                list.Add(new(p + RetentionDecay, [c.NumAttentionHeads, h], TensorRole.Linear, i));
            }
            else if (i < half)
            {
                list.Add(new(p + "self_attn.k_proj.weight", [c.KeyValueDim, h], TensorRole.Linear, i));
                list.Add(new(p + "self_attn.v_proj.weight", [c.KeyValueDim, h], TensorRole.Linear, i));
            }

            list.Add(new(p + "self_attn.o_proj.weight", [h, c.QueryDim], TensorRole.Linear, i));
            if (i >= half && c.FusedKv is { Lite: false })
            {
                list.Add(new(p + KeyFusion, [2, c.KeyValueDim], TensorRole.KeyFusion, i));
                list.Add(new(p + ValueFusion, [2, c.KeyValueDim], TensorRole.ValueFusion, i));
            }

            list.Add(new(p + "post_attention_layernorm.weight", [h], TensorRole.Norm, i));
            list.Add(new(p + "mlp.gate_proj.weight", [c.IntermediateSize, h], TensorRole.Linear, i));
            list.Add(new(p + "mlp.up_proj.weight", [c.IntermediateSize, h], TensorRole.Linear, i));
            list.Add(new(p + "mlp.down_proj.weight", [h, c.IntermediateSize], TensorRole.Linear, i));
            if (i == half - 1 && c.Yoco is not null)
            {
                list.Add(new(CrossKvNorm, [h], TensorRole.Norm, -1));
                list.Add(new(CrossKvK, [c.KeyValueDim, h], TensorRole.Linear, -1));
                list.Add(new(CrossKvV, [c.KeyValueDim, h], TensorRole.Linear, -1));
            }
        }

        list.Add(new(LlamaTensors.FinalNorm, [h], TensorRole.Norm, -1));
        if (!c.TieWordEmbeddings)
        {
            list.Add(new(LlamaTensors.LmHead, [c.VocabSize, h], TensorRole.LmHead, -1));
        }

        return list;
    }
}
