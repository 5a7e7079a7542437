namespace KvCache.GpuWorker;

/// <summary>
/// A loaded decoder model on one compute backend, with the memory pool its sessions' KV caches live in.
/// </summary>
/// <remarks>
/// Forward passes are batch-invariant: feeding tokens one at a time or in chunks of any size leaves
/// bit-identical cache state and logits. Session resume depends on it (a replay of the token log must
/// reproduce the cache that decode built one token at a time).
/// </remarks>
public interface ILanguageModel : IDisposable
{
    /// <summary>Model id clients name in CreateSession (the model directory's name unless configured).</summary>
    string Id { get; }

    ModelConfig Config { get; }

    /// <summary>Hash of config and weights. Snapshots record it; a snapshot of other weights is refused.</summary>
    string Fingerprint { get; }

    /// <summary>Number of parameters (weights) of the model.</summary>
    long ParameterCount { get; }

    /// <summary>Codec ids this model can create caches with ("full" at least).</summary>
    IReadOnlyList<string> Codecs { get; }

    /// <summary>Bytes of cache memory reserved for this model's sessions.</summary>
    long CacheBytesTotal { get; }

    /// <summary>Bytes of cache memory not held by any session.</summary>
    long CacheBytesFree { get; }

    /// <summary>Bytes a cache of <paramref name="codec"/> holds at <paramref name="position"/>.</summary>
    long CacheBytesAt(string codec, int position);

    /// <summary>Creates an empty cache (position 0).</summary>
    /// <exception cref="ArgumentException">Unknown codec.</exception>
    IKvCache CreateCache(string codec);

    /// <summary>
    /// Appends <paramref name="tokens"/> to <paramref name="cache"/> and writes the next-token logits
    /// (length <see cref="ModelConfig.VocabSize"/>) of the last one into <paramref name="logits"/>.
    /// Long inputs are processed in chunks internally.
    /// </summary>
    /// <exception cref="CacheCapacityException">The pool has no room for the new tokens; the cache is unchanged.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id outside the vocabulary, or past max positions.</exception>
    void Forward(IKvCache cache, ReadOnlySpan<int> tokens, Span<float> logits);

    /// <summary>Most tokens one <see cref="ForwardBatch"/> pass carries, over all its items.</summary>
    int MaxBatchTokens { get; }

    /// <summary>
    /// Checks <paramref name="tokens"/> against <paramref name="cache"/> and takes the cache memory they need, so that
    /// a later <see cref="Forward"/> or <see cref="ForwardBatch"/> of them cannot fail for either reason.
    /// </summary>
    /// <exception cref="CacheCapacityException">The pool has no room for the new tokens; the cache is unchanged.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id outside the vocabulary, or past max positions.</exception>
    void Reserve(IKvCache cache, ReadOnlySpan<int> tokens);

    /// <summary>
    /// One forward pass over several caches (at most <see cref="MaxBatchTokens"/> tokens in all, each cache once):
    /// every weight is read once for the whole batch while each cache's tokens attend over that cache alone. The
    /// results equal those of separate <see cref="Forward"/> calls bit for bit (a pass is batch-invariant).
    /// </summary>
    /// <exception cref="ArgumentException">Too many tokens, a cache twice, a cache of another model or short logits.</exception>
    /// <exception cref="CacheCapacityException">A cache needs memory the pool does not have (reserve first to learn which).</exception>
    void ForwardBatch(ReadOnlySpan<ForwardItem> items);
}
