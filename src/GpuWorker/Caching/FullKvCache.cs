using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>
/// The "full" codec of a plain Llama model: every layer's post-RoPE K and V, per KV head, head_dim f32 each,
/// in a <see cref="PagedKvCache"/> with heads = num_key_value_heads and dim = head_dim.
/// Bytes per token = 2 · layers · num_key_value_heads · head_dim · 4.
/// </summary>
public static class FullKvCache
{
    public const string CodecId = "full";

    public static long BytesPerTokenFor(ModelConfig config) => KvLayout.Full(config).BytesPerToken;
}
