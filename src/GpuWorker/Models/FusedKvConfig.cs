using System.Text.Json;

namespace KvCache.GpuWorker;

/// <summary>
/// A FusedKV decoder (Lin et al. 2025, "Reconstructing KV Caches with Cross-layer Fusion"), stored in config.json as
/// <c>"architectures": ["FusedKvForCausalLM"], "model_type": "fusedkv", "fusedkv_lite": false|true</c> beside the
/// Llama fields.
/// </summary>
/// <remarks>
/// <para>Layers 1..n (n = L/2; indices [0, n)) are Llama layers that cache their post-RoPE K and V. Each layer
/// i &gt; n has q_proj and o_proj but no k_proj / v_proj and rebuilds its keys and values from the cache:
/// K_i = a_i1 ⊙ K_1 + a_in ⊙ K_n and V_i = b_i1 ⊙ V_1 + b_in ⊙ V_n. The weights are per KV head and channel:
/// <c>self_attn.k_fusion.weight</c> [2, num_key_value_heads · head_dim] holds rows a_i1, a_in and
/// <c>self_attn.v_fusion.weight</c> the rows b_i1, b_in. Channels j and j + head_dim/2 (one rotate-half RoPE pair)
/// must carry equal key weights: then fusing post-RoPE keys equals applying RoPE to fused keys.</para>
/// <para>Lite has no fusion weights: K_i = K_n and V_i = V_1. num_hidden_layers must be even.</para>
/// </remarks>
public sealed record FusedKvConfig
{
    public const string Architecture = "FusedKvForCausalLM";

    /// <summary>FusedKV-Lite (plain reuse, no fusion weights) instead of the learned fusion.</summary>
    public bool Lite { get; init; }

    /// <summary>Codec of the model's cache: "fusedkv" or "fusedkv-lite".</summary>
    public string CodecId => Lite ? FusedKvCache.LiteCodecId : FusedKvCache.CodecId;

    internal void Validate(ModelConfig model)
    {
        if (model.NumHiddenLayers % 2 != 0)
        {
            throw new ArgumentException($"FusedKV needs an even num_hidden_layers (half cached, half fused), got {model.NumHiddenLayers}.");
        }
    }

    internal void WriteJson(Utf8JsonWriter w) => w.WriteBoolean("fusedkv_lite", Lite);

    internal static FusedKvConfig FromJson(JsonElement root) => new()
    {
        Lite = root.TryGetProperty("fusedkv_lite", out var lite) && lite.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False or JsonValueKind.Null => false,
            _ => throw new FormatException($"config.json 'fusedkv_lite' must be a boolean, got {lite.GetRawText()}."),
        },
    };
}
