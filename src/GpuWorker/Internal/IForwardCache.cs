namespace KvCache.GpuWorker.Internal;

/// <summary>What a forward pass needs of every codec's cache, besides its codec-specific memory.</summary>
internal interface IForwardCache
{
    /// <summary>The model that created the cache; another model's cache is refused.</summary>
    object Owner { get; }

    int Position { get; }

    /// <summary>Takes pool memory so that <paramref name="tokens"/> positions fit; all or nothing.</summary>
    /// <exception cref="CacheCapacityException">The pool has no room; nothing changed.</exception>
    void EnsureCapacity(int tokens);

    void Advance(int tokens);
}
