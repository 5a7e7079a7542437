namespace KvCache.GpuWorker;

/// <summary>How a model keeps its linear weights (projections, MLP, LM head) in memory; norms and embeddings stay f32.</summary>
public enum WeightFormat
{
    /// <summary>f32: exact for any checkpoint.</summary>
    F32,

    /// <summary>
    /// bf16 with f32 accumulation: half the bytes each decode step reads. Exact for a bf16 checkpoint (same logits,
    /// same fingerprint as <see cref="F32"/>); an f32 or f16 checkpoint is rounded to nearest even.
    /// </summary>
    Bf16,
}
