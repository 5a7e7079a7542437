namespace KvCache.GpuWorker.Internal;

/// <summary>
/// How a cache's serialized state (<see cref="IKvCache.ReadState"/>) lies in pool memory: a run of pieces (one
/// head's vector of one token, say), each contiguous in memory, in the order the codec's state format gives.
/// </summary>
internal unsafe interface ICacheState
{
    long StateLength { get; }

    /// <summary>The memory of state byte <paramref name="offset"/>, and how many bytes from there are contiguous.</summary>
    byte* Locate(long offset, out long contiguous);
}

/// <summary>Snapshot reads and restore writes of any codec's state, piece by piece.</summary>
internal static unsafe class CacheState
{
    public static void Read<T>(T cache, long offset, Span<byte> destination)
        where T : ICacheState
    {
        CheckRange(cache, offset, destination.Length);
        fixed (byte* p = destination)
        {
            Copy(cache, offset, destination.Length, p, toCache: false);
        }
    }

    public static void Write<T>(T cache, long offset, ReadOnlySpan<byte> source)
        where T : ICacheState
    {
        CheckRange(cache, offset, source.Length);
        fixed (byte* p = source)
        {
            Copy(cache, offset, source.Length, p, toCache: true);
        }
    }

    private static void CheckRange<T>(T cache, long offset, int length)
        where T : ICacheState
    {
        if (offset < 0 || offset > cache.StateLength - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"Range [{offset}, {offset + length}) is outside the {cache.StateLength}-byte state.");
        }
    }

    private static void Copy<T>(T cache, long offset, int length, byte* external, bool toCache)
        where T : ICacheState
    {
        while (length > 0)
        {
            byte* at = cache.Locate(offset, out long contiguous);
            int n = (int)Math.Min(contiguous, length);
            if (toCache)
            {
                Buffer.MemoryCopy(external, at, n, n);
            }
            else
            {
                Buffer.MemoryCopy(at, external, n, n);
            }

            external += n;
            offset += n;
            length -= n;
        }
    }
}
