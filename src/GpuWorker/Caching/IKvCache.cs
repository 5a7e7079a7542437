namespace KvCache.GpuWorker;

/// <summary>
/// One session's KV cache, in the layout of its codec. Disposing returns its memory to the model's pool.
/// </summary>
/// <remarks>
/// The cache's state serializes to <see cref="StateLength"/> bytes in the codec's own layout. Snapshots copy
/// it out with <see cref="ReadState"/> in chunks, and a new cache takes it back with
/// <see cref="BeginRestore"/> followed by <see cref="WriteState"/> over the same byte range.
/// </remarks>
public interface IKvCache : IDisposable
{
    /// <summary>Codec id, e.g. "full".</summary>
    string Codec { get; }

    /// <summary>Tokens held (the next token's position).</summary>
    int Position { get; }

    /// <summary>Bytes the codec stores per token.</summary>
    long BytesPerToken { get; }

    /// <summary>Bytes of state held at the current position.</summary>
    long CacheBytes { get; }

    /// <summary>Bytes of serialized state at the current position.</summary>
    long StateLength { get; }

    /// <summary>Copies serialized state bytes [offset, offset + destination.Length) into destination.</summary>
    void ReadState(long offset, Span<byte> destination);

    /// <summary>
    /// Empties the cache and sizes it for a state at <paramref name="position"/>; after it,
    /// <see cref="StateLength"/> is that state's length and <see cref="WriteState"/> fills it.
    /// </summary>
    /// <exception cref="CacheCapacityException">The pool has no room.</exception>
    void BeginRestore(int position);

    /// <summary>Writes serialized state bytes at offset (after <see cref="BeginRestore"/>).</summary>
    void WriteState(long offset, ReadOnlySpan<byte> source);
}
