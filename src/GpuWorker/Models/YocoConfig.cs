using System.Text.Json;

namespace KvCache.GpuWorker;

/// <summary>
/// A YOCO decoder-decoder (Sun et al. 2024, "You Only Cache Once"), stored in config.json as
/// <c>"architectures": ["YocoForCausalLM"], "model_type": "yoco", "sliding_window": C</c> beside the Llama fields.
/// </summary>
/// <remarks>
/// <para>Layers [0, L/2) form the self-decoder: Llama layers whose attention sees only the last C positions
/// (the query's own included), so each keeps a ring buffer of C keys and values per KV head. The self-decoder's
/// output x gives one global K̂ = RoPE(RMSNorm(x) W_K̂), V̂ = RMSNorm(x) W_V̂ per token (tensors
/// <c>model.cross_kv.{norm,k_proj,v_proj}.weight</c>, num_key_value_heads heads). Layers [L/2, L) form the
/// cross-decoder: each has its own q_proj and o_proj (no k_proj / v_proj) and attends causally over K̂, V̂.</para>
/// <para>num_hidden_layers must be even and C at most max_position_embeddings.</para>
/// </remarks>
public sealed record YocoConfig
{
    public const string Architecture = "YocoForCausalLM";

    /// <summary>Positions a self-decoder query attends to (C), its own included.</summary>
    public required int SlidingWindow { get; init; }

    internal void Validate(ModelConfig model)
    {
        if (model.NumHiddenLayers % 2 != 0)
        {
            throw new ArgumentException($"YOCO needs an even num_hidden_layers (half self-decoder, half cross-decoder), got {model.NumHiddenLayers}.");
        }

        if (SlidingWindow <= 0 || SlidingWindow > model.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"sliding_window {SlidingWindow} must lie in [1, max_position_embeddings = {model.MaxPositionEmbeddings}].");
        }
    }

    internal void WriteJson(Utf8JsonWriter w) => w.WriteNumber("sliding_window", SlidingWindow);

    internal static YocoConfig FromJson(JsonElement root) => new()
    {
        SlidingWindow = ModelConfig.RequiredInt(root, "sliding_window"),
    };
}
