namespace KvCache.GpuWorker.Internal;

internal enum TensorRole
{
    Embedding,
    Norm,
    Linear,
    LmHead,

    /// <summary>FusedKV key weights: equal within each rotate-half RoPE pair.</summary>
    KeyFusion,

    /// <summary>FusedKV value weights.</summary>
    ValueFusion,
}

/// <summary>One weight of a Llama checkpoint under its Hugging Face name, shape [out, in] for linears.</summary>
internal sealed record LlamaTensor(string Name, int[] Shape, TensorRole Role, int Layer)
{
    public long ElementCount => Shape.Aggregate(1L, (n, d) => n * d);
}

internal static class LlamaTensors
{
    public const string Embedding = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";
    public const string LmHead = "lm_head.weight";

    /// <summary>Per layer, the SVD-GQA key basis: for each group g, rows [g·d, (g+1)·d) are Ψ_K,gᵀ ([d, t·head_dim]).</summary>
    public const string KeyBasis = "self_attn.k_basis.weight";

    /// <summary>
    /// The weights of <paramref name="c"/> in canonical order (lm_head omitted when tied). An SVD-GQA model has
    /// folded v_proj [groups·d, hidden] and o_proj [hidden, heads·d] and a key basis after o_proj.
    /// </summary>
    public static IReadOnlyList<LlamaTensor> List(ModelConfig c)
    {
        if (c.Yoco is not null || c.FusedKv is not null)
        {
            return VariantTensors.List(c);
        }

        int h = c.HiddenSize;
        int vOut = c.SvdGqa is { } s ? c.SvdGqaGroups * s.Rank : c.KeyValueDim;
        int oIn = c.SvdGqa is { } s2 ? c.NumAttentionHeads * s2.Rank : c.QueryDim;
        var list = new List<LlamaTensor> { new(Embedding, [c.VocabSize, h], TensorRole.Embedding, -1) };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            list.Add(new(p + "input_layernorm.weight", [h], TensorRole.Norm, i));
            list.Add(new(p + "self_attn.q_proj.weight", [c.QueryDim, h], TensorRole.Linear, i));
            list.Add(new(p + "self_attn.k_proj.weight", [c.KeyValueDim, h], TensorRole.Linear, i));
            list.Add(new(p + "self_attn.v_proj.weight", [vOut, h], TensorRole.Linear, i));
            list.Add(new(p + "self_attn.o_proj.weight", [h, oIn], TensorRole.Linear, i));
            if (c.SvdGqa is { } svd)
            {
                list.Add(new(p + KeyBasis, [vOut, svd.GroupSize * c.HeadDim], TensorRole.Linear, i));
            }

            list.Add(new(p + "post_attention_layernorm.weight", [h], TensorRole.Norm, i));
            list.Add(new(p + "mlp.gate_proj.weight", [c.IntermediateSize, h], TensorRole.Linear, i));
            list.Add(new(p + "mlp.up_proj.weight", [c.IntermediateSize, h], TensorRole.Linear, i));
            list.Add(new(p + "mlp.down_proj.weight", [h, c.IntermediateSize], TensorRole.Linear, i));
        }

        list.Add(new(FinalNorm, [h], TensorRole.Norm, -1));
        if (!c.TieWordEmbeddings)
        {
            list.Add(new(LmHead, [c.VocabSize, h], TensorRole.LmHead, -1));
        }

        return list;
    }
}
