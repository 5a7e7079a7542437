using System.Runtime.InteropServices;
using KvCache.GpuWorker;

namespace KvCache.Bench.Spill;

/// <summary>
/// A stand-in <see cref="IKvCache"/> over one preallocated native arena (pages touched up front, as a real
/// cache pool is), so the benchmark measures the spill path, not page faults.
/// </summary>
internal sealed unsafe class NativeKvCache : IKvCache
{
    private readonly byte* _arena;
    private readonly long _capacity;

    public NativeKvCache(string codec, long bytesPerToken, int maxPositions)
    {
        Codec = codec;
        BytesPerToken = bytesPerToken;
        _capacity = bytesPerToken * maxPositions;
        _arena = (byte*)NativeMemory.AlignedAlloc((nuint)_capacity, 64);
        NativeMemory.Clear(_arena, (nuint)_capacity);
    }

    public string Codec { get; }

    public int Position { get; private set; }

    public long BytesPerToken { get; }

    public long CacheBytes => StateLength;

    public long StateLength => Position * BytesPerToken;

    public Span<byte> Span(long offset, int length) => new(_arena + offset, length);

    /// <summary>Fills the cache to <paramref name="position"/> with pseudo-random bytes.</summary>
    public void Fill(int position, int seed)
    {
        BeginRestore(position);
        var random = new Random(seed);
        for (long offset = 0; offset < StateLength; offset += 1 << 20)
        {
            random.NextBytes(Span(offset, (int)Math.Min(1 << 20, StateLength - offset)));
        }
    }

    public void ReadState(long offset, Span<byte> destination) => Span(offset, destination.Length).CopyTo(destination);

    public void BeginRestore(int position)
    {
        if (position * BytesPerToken > _capacity)
        {
            throw new CacheCapacityException($"{position} tokens do not fit in {_capacity} bytes.");
        }

        Position = position;
    }

    public void WriteState(long offset, ReadOnlySpan<byte> source) => source.CopyTo(Span(offset, source.Length));

    public void Dispose() => NativeMemory.AlignedFree(_arena);
}
