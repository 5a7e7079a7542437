using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>
/// The "svd-gqa" codec of an SVD-GQA-converted model (<see cref="ModelConfig.SvdGqa"/>): a
/// <see cref="PagedKvCache"/> with one cache head per group of t KV heads and dim = rank d. Per token, layer and
/// group g the K side holds c = [R k¹ … R kᵗ] Ψ_K,g (post-RoPE keys of the group, concatenated, projected on
/// the group's key basis) and the V side holds v' = x W_V',g (values already projected by the folded weights).
/// Bytes per token = 2 · layers · (num_key_value_heads / t) · d · 4 = ratio × the full cache.
/// </summary>
public static class SvdGqaKvCache
{
    public const string CodecId = "svd-gqa";

    /// <exception cref="ArgumentException">The model is not SVD-GQA-converted.</exception>
    public static long BytesPerTokenFor(ModelConfig config) => KvLayout.SvdGqa(config).BytesPerToken;
}
