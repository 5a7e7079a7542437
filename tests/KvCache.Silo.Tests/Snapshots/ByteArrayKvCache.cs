using KvCache.GpuWorker;

namespace KvCache.Silo.Tests.Snapshots;

/// <summary>A test <see cref="IKvCache"/> whose state is a byte array of position × bytesPerToken bytes.</summary>
internal sealed class ByteArrayKvCache(string codec, long bytesPerToken) : IKvCache
{
    public byte[] State { get; private set; } = [];

    public string Codec { get; } = codec;

    public int Position { get; private set; }

    public long BytesPerToken { get; } = bytesPerToken;

    public long CacheBytes => State.Length;

    public long StateLength => State.Length;

    public int Restores { get; private set; }

    public static ByteArrayKvCache Filled(string codec, long bytesPerToken, int position, int seed)
    {
        var cache = new ByteArrayKvCache(codec, bytesPerToken);
        cache.BeginRestore(position);
        new Random(seed).NextBytes(cache.State);
        return cache;
    }

    public void ReadState(long offset, Span<byte> destination) => State.AsSpan(checked((int)offset), destination.Length).CopyTo(destination);

    public void BeginRestore(int position)
    {
        Restores++;
        Position = position;
        State = new byte[position * BytesPerToken];
    }

    public void WriteState(long offset, ReadOnlySpan<byte> source) => source.CopyTo(State.AsSpan(checked((int)offset)));

    public void Dispose()
    {
    }
}
