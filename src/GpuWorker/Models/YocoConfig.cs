using System.Text.Json;

namespace KvCache.GpuWorker;

/// <summary>Which layers form a YOCO model's self-decoder (<see cref="YocoConfig.SelfDecoder"/>).</summary>
public enum YocoSelfDecoder
{
    /// <summary>Sliding-window attention over the last <see cref="YocoConfig.SlidingWindow"/> positions (a ring of keys and values).</summary>
    SlidingWindow,

    /// <summary>Gated retention (gRet, the paper's default): a d×d state per head with a data-dependent decay.</summary>
    GatedRetention,
}

/// <summary>
/// A YOCO decoder-decoder (Sun et al. 2024, "You Only Cache Once"), stored in config.json as
/// <c>"architectures": ["YocoForCausalLM"], "model_type": "yoco"</c> beside the Llama fields, with either
/// <c>"sliding_window": C</c> (sliding-window self-decoder, the default) or
/// <c>"self_decoder": "gated_retention"</c> (optionally <c>"gate_logit_normalizer": τ</c>, default 16).
/// </summary>
/// <remarks>
/// <para>Layers [0, L/2) form the self-decoder. With sliding-window attention they are Llama layers whose attention
/// sees only the last C positions (the query's own included), so each keeps a ring buffer of C keys and values per KV
/// head. With gated retention (the paper's section 2.1.1, as its code computes it) each is a Llama layer whose attention is replaced by,
/// per head i of num_attention_heads (head_dim d): q = RoPE(x W_Q), k = RoPE(x W_K) / √d, v = x W_V, a decay
/// γₙ = sigmoid(xₙ W_γ)^(1/τ) per position (W_γ: <c>self_attn.gt_proj.weight</c> [heads, hidden]), the state
/// Sₙ = γₙ Sₙ₋₁ + kₙᵀ vₙ (d×d) and oₙ = qₙ Sₙ; then each head's o is RMS-normalized (no weight, rms_norm_eps), multiplied by
/// swish(x W_G) (<c>self_attn.g_proj.weight</c>) and projected by o_proj. Its q/k/v/g projections are
/// [num_attention_heads · head_dim, hidden].</para>
/// <para>The self-decoder's output x gives one global K̂ = RoPE(RMSNorm(x) W_K̂), V̂ = RMSNorm(x) W_V̂ per token (tensors
/// <c>model.cross_kv.{norm,k_proj,v_proj}.weight</c>, num_key_value_heads heads). Layers [L/2, L) form the
/// cross-decoder: each has its own q_proj and o_proj (no k_proj / v_proj) and attends causally over K̂, V̂.</para>
/// <para>num_hidden_layers must be even; C lies in [1, max_position_embeddings] (sliding window) or is 0 (gated retention).</para>
/// </remarks>
public sealed record YocoConfig
{
    public const string Architecture = "YocoForCausalLM";

    /// <summary>config.json's <c>self_decoder</c> value for <see cref="YocoSelfDecoder.GatedRetention"/>.</summary>
    public const string GatedRetentionName = "gated_retention";

    /// <summary>config.json's <c>self_decoder</c> value for <see cref="YocoSelfDecoder.SlidingWindow"/> (also the default when absent).</summary>
    public const string SlidingWindowName = "sliding_window";

    public YocoSelfDecoder SelfDecoder { get; init; } = YocoSelfDecoder.SlidingWindow;

    /// <summary>Positions a sliding-window self-decoder query attends to (C), its own included; 0 with gated retention.</summary>
    public int SlidingWindow { get; init; }

    /// <summary>τ of gated retention's decay γ = sigmoid(x W_γ)^(1/τ) (YOCO's gate_logit_normalizer).</summary>
    public double GateLogitNormalizer { get; init; } = 16;

    internal void Validate(ModelConfig model)
    {
        if (model.NumHiddenLayers % 2 != 0)
        {
            throw new ArgumentException($"YOCO needs an even num_hidden_layers (half self-decoder, half cross-decoder), got {model.NumHiddenLayers}.");
        }

        if (SelfDecoder == YocoSelfDecoder.GatedRetention)
        {
            if (SlidingWindow != 0)
            {
                throw new ArgumentException("A gated-retention self-decoder has no sliding_window.");
            }

            if (!(GateLogitNormalizer > 0) || !double.IsFinite(GateLogitNormalizer))
            {
                throw new ArgumentException($"gate_logit_normalizer {GateLogitNormalizer} must be a positive number.");
            }
        }
        else if (SlidingWindow <= 0 || SlidingWindow > model.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"sliding_window {SlidingWindow} must lie in [1, max_position_embeddings = {model.MaxPositionEmbeddings}].");
        }
    }

    // A sliding-window model writes only sliding_window, as before gated retention existed: its config text, and so
    // the fingerprint its snapshots carry, stay what they were.
    internal void WriteJson(Utf8JsonWriter w)
    {
        if (SelfDecoder == YocoSelfDecoder.GatedRetention)
        {
            w.WriteString("self_decoder", GatedRetentionName);
            w.WriteNumber("gate_logit_normalizer", GateLogitNormalizer);
        }
        else
        {
            w.WriteNumber("sliding_window", SlidingWindow);
        }
    }

    internal static YocoConfig FromJson(JsonElement root)
    {
        string? selfDecoder = root.TryGetProperty("self_decoder", out var e) && e.ValueKind != JsonValueKind.Null
            ? e.ValueKind == JsonValueKind.String ? e.GetString() : throw new FormatException($"config.json 'self_decoder' must be a string, got {e.GetRawText()}.")
            : null;
        return selfDecoder switch
        {
            null or SlidingWindowName => new YocoConfig { SlidingWindow = ModelConfig.RequiredInt(root, "sliding_window") },
            GatedRetentionName => new YocoConfig
            {
                SelfDecoder = YocoSelfDecoder.GatedRetention,
                SlidingWindow = ModelConfig.OptionalInt(root, "sliding_window") ?? 0,
                GateLogitNormalizer = ModelConfig.OptionalDouble(root, "gate_logit_normalizer") ?? 16,
            },
            _ => throw new NotSupportedException($"self_decoder '{selfDecoder}' is not supported ({SlidingWindowName}, {GatedRetentionName})."),
        };
    }
}
