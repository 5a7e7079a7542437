using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>
/// The "fusedkv" and "fusedkv-lite" codecs of a FusedKV model (<see cref="ModelConfig.FusedKv"/>): a
/// <see cref="PagedKvCache"/> holding the post-RoPE K and V of the lower n = L/2 layers only (heads =
/// num_key_value_heads, dim = head_dim); the upper layers rebuild theirs from layers 1 and n while attending.
/// Bytes per token = 2 · (L/2) · num_key_value_heads · head_dim · 4 = half of the full cache of the same shape.
/// </summary>
public static class FusedKvCache
{
    public const string CodecId = "fusedkv";

    public const string LiteCodecId = "fusedkv-lite";

    /// <exception cref="ArgumentException">The model is not a FusedKV model.</exception>
    public static long BytesPerTokenFor(ModelConfig config) => Layout(config).BytesPerToken;

    internal static KvLayout Layout(ModelConfig c) => c.FusedKv is not null
        ? new(c.NumHiddenLayers / 2, c.NumKeyValueHeads, c.HeadDim)
        : throw new ArgumentException("The model is not a FusedKV model.", nameof(c));
}
