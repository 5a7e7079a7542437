using System.Buffers;
using System.Runtime.InteropServices;
using KvCache.Contracts.Snapshots;
using KvCache.GpuWorker;
using KvCache.Silo.Storage;

namespace KvCache.Silo.Snapshots;

/// <summary>Spills a session's cache and logits to the store as a snapshot.</summary>
public static class SnapshotWriter
{
    public static ValueTask<SnapshotHeader> WriteAsync(
        ISessionStore store, SessionKey key, IKvCache cache, string modelId, string modelFingerprint,
        ReadOnlyMemory<float> logits, CancellationToken cancellationToken) =>
        WriteAsync(store, key, cache, modelId, modelFingerprint, logits, SnapshotOptions.Default, cancellationToken);

    /// <summary>
    /// Copies the cache state and then <paramref name="logits"/> into chunks, writes them with up to
    /// <see cref="SnapshotOptions.MaxInFlight"/> in flight, then commits the header, which makes the
    /// snapshot replace the previous one. The cache must not change until this completes.
    /// </summary>
    /// <returns>The committed header.</returns>
    public static async ValueTask<SnapshotHeader> WriteAsync(
        ISessionStore store, SessionKey key, IKvCache cache, string modelId, string modelFingerprint,
        ReadOnlyMemory<float> logits, SnapshotOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ThrowIfBigEndian();

        int position = cache.Position;
        long stateLength = cache.StateLength;
        long payloadLength = stateLength + logits.Length * (long)sizeof(float);
        int chunkSize = options.ChunkSize;
        int chunkCount = SnapshotHeader.ChunksFor(payloadLength, chunkSize);
        long snapshotId = Random.Shared.NextInt64(1, long.MaxValue);
        var checksum = new XxHash64();
        var inFlight = new Queue<(ValueTask Write, byte[] Buffer)>(options.MaxInFlight);
        try
        {
            for (int i = 0; i < chunkCount; i++)
            {
                if (inFlight.Count == options.MaxInFlight)
                {
                    await CompleteOldestAsync(inFlight).ConfigureAwait(false);
                }

                long offset = (long)i * chunkSize;
                int length = (int)Math.Min(chunkSize, payloadLength - offset);
                byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
                ValueTask write;
                try
                {
                    CopyPayload(cache, logits.Span, stateLength, offset, buffer.AsSpan(0, length));
                    checksum.Append(buffer.AsSpan(0, length));
                    write = store.WriteSnapshotChunkAsync(key, snapshotId, i, buffer.AsMemory(0, length), cancellationToken);
                }
                catch
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    throw;
                }

                inFlight.Enqueue((write, buffer));
            }

            while (inFlight.Count > 0)
            {
                await CompleteOldestAsync(inFlight).ConfigureAwait(false);
            }
        }
        finally
        {
            // After a failure, the remaining writes still read their buffers: wait before returning them.
            while (inFlight.Count > 0)
            {
                try
                {
                    await CompleteOldestAsync(inFlight).ConfigureAwait(false);
                }
                catch
                {
                    // The first failure is the one already propagating.
                }
            }
        }

        var header = new SnapshotHeader(modelId, modelFingerprint, cache.Codec, position, stateLength, logits.Length, chunkSize, chunkCount, checksum.GetCurrentHash());
        await store.CommitSnapshotAsync(key, snapshotId, header.Encode(), cancellationToken).ConfigureAwait(false);
        return header;
    }

    internal static void ThrowIfBigEndian()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Snapshots store logits as little-endian float32; this platform is big-endian.");
        }
    }

    private static async ValueTask CompleteOldestAsync(Queue<(ValueTask Write, byte[] Buffer)> inFlight)
    {
        var (write, buffer) = inFlight.Dequeue();
        try
        {
            await write.ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Payload bytes [offset, offset + destination.Length): state first, then the logits' bytes.</summary>
    private static void CopyPayload(IKvCache cache, ReadOnlySpan<float> logits, long stateLength, long offset, Span<byte> destination)
    {
        if (offset < stateLength)
        {
            int n = (int)Math.Min(destination.Length, stateLength - offset);
            cache.ReadState(offset, destination[..n]);
            destination = destination[n..];
            offset += n;
        }

        if (destination.IsEmpty)
        {
            return;
        }

        MemoryMarshal.AsBytes(logits).Slice((int)(offset - stateLength), destination.Length).CopyTo(destination);
    }
}
