namespace KvCache.GpuWorker;

/// <summary>How <see cref="LlamaModel.Load(string, ModelLoadOptions)"/> sets up a model.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Model id; the directory's name when null.</summary>
    public string? Id { get; init; }

    /// <summary>Bytes of KV-cache memory preallocated at load for all of this model's sessions.</summary>
    public long CacheBudgetBytes { get; init; } = 256L << 20;

    /// <summary>Tokens per cache block (the pool's allocation unit).</summary>
    public int BlockTokens { get; init; } = 32;

    /// <summary>Threads that share each matmul and attention op.</summary>
    public int ComputeThreads { get; init; } = Environment.ProcessorCount;

    /// <summary>Precision the linear weights are kept in; bf16 halves the bytes a decode step reads.</summary>
    public WeightFormat WeightFormat { get; init; } = WeightFormat.F32;

    /// <summary>Precision the KV caches keep their keys and values in; bf16 halves a session's memory and the bytes attention reads.</summary>
    public KvCacheFormat CacheFormat { get; init; } = KvCacheFormat.F32;
}
