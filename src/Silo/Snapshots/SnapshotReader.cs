using System.Buffers;
using System.Runtime.InteropServices;
using KvCache.Contracts.Snapshots;
using KvCache.GpuWorker;
using KvCache.Silo.Storage;

namespace KvCache.Silo.Snapshots;

/// <summary>Restores a session's cache and logits from its snapshot, refusing any that does not match or verify.</summary>
public static class SnapshotReader
{
    public static ValueTask<int?> RestoreAsync(
        ISessionStore store, SessionKey key, IKvCache freshCache, string expectedModelId, string expectedFingerprint,
        Memory<float> logits, CancellationToken cancellationToken) =>
        RestoreAsync(store, key, freshCache, expectedModelId, expectedFingerprint, logits, SnapshotOptions.Default, cancellationToken);

    /// <summary>
    /// Reads the session's current snapshot into <paramref name="freshCache"/> (an empty cache of the session's
    /// codec) and <paramref name="logits"/>, with up to <see cref="SnapshotOptions.MaxInFlight"/> chunk reads in flight.
    /// </summary>
    /// <returns>The restored position, or null if the session has no snapshot.</returns>
    /// <exception cref="SnapshotMismatchException">Another model, fingerprint, codec or shape; nothing was read.</exception>
    /// <exception cref="SnapshotCorruptException">Bad header, missing or wrong-sized chunk, or checksum mismatch.</exception>
    /// <remarks>
    /// The payload is verified as it streams into the cache, and the result is returned only once the checksum
    /// holds. On any failure the cache is left empty (position 0) and the logits zeroed, so the caller can
    /// replay the token log instead.
    /// </remarks>
    public static async ValueTask<int?> RestoreAsync(
        ISessionStore store, SessionKey key, IKvCache freshCache, string expectedModelId, string expectedFingerprint,
        Memory<float> logits, SnapshotOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(freshCache);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        SnapshotWriter.ThrowIfBigEndian();

        var stored = await store.GetSnapshotAsync(key, cancellationToken).ConfigureAwait(false);
        if (stored is null)
        {
            return null;
        }

        SnapshotHeader header;
        try
        {
            header = SnapshotHeader.Decode(stored.Header.Span);
        }
        catch (SnapshotFormatException e)
        {
            throw new SnapshotCorruptException($"Snapshot of session '{key.SessionId}' has a bad header: {e.Message}", e);
        }

        Expect("model id", expectedModelId, header.ModelId);
        Expect("model fingerprint", expectedFingerprint, header.ModelFingerprint);
        Expect("codec", freshCache.Codec, header.CodecId);
        Expect("logits length", logits.Length, header.LogitsLength);

        var inFlight = new Queue<(ValueTask<int> Read, byte[] Buffer)>(options.MaxInFlight);
        try
        {
            freshCache.BeginRestore(header.Position);
            Expect("state length", freshCache.StateLength, header.StateLength);

            var checksum = new XxHash64();
            int next = 0;
            for (int i = 0; i < header.ChunkCount; i++)
            {
                while (next < header.ChunkCount && inFlight.Count < options.MaxInFlight)
                {
                    inFlight.Enqueue(StartRead(store, key, stored.SnapshotId, header, next++, cancellationToken));
                }

                var (read, buffer) = inFlight.Dequeue();
                try
                {
                    int expected = header.ChunkLength(i);
                    int length = await ReadChunkAsync(read, key, i).ConfigureAwait(false);
                    if (length != expected)
                    {
                        throw new SnapshotCorruptException($"Snapshot chunk {i} of session '{key.SessionId}' has {length} bytes, expected {expected}.");
                    }

                    checksum.Append(buffer.AsSpan(0, length));
                    ApplyPayload(freshCache, logits.Span, header.StateLength, (long)i * header.ChunkSize, buffer.AsSpan(0, length));
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }

            ulong actual = checksum.GetCurrentHash();
            if (actual != header.Checksum)
            {
                throw new SnapshotCorruptException($"Snapshot of session '{key.SessionId}' fails its checksum ({actual:x16}, expected {header.Checksum:x16}).");
            }

            return header.Position;
        }
        catch
        {
            // Reads still in flight write into their buffers: let them land before the buffers go back.
            while (inFlight.Count > 0)
            {
                var (read, buffer) = inFlight.Dequeue();
                try
                {
                    await read.ConfigureAwait(false);
                }
                catch
                {
                    // The first failure is the one propagating.
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }

            logits.Span.Clear();
            freshCache.BeginRestore(0);
            throw;
        }
    }

    private static (ValueTask<int> Read, byte[] Buffer) StartRead(ISessionStore store, SessionKey key, long snapshotId, SnapshotHeader header, int index, CancellationToken cancellationToken)
    {
        int length = header.ChunkLength(index);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            // Exactly the expected length: a longer chunk fails the read instead of overrunning.
            return (store.ReadSnapshotChunkAsync(key, snapshotId, index, buffer.AsMemory(0, length), cancellationToken), buffer);
        }
        catch (Exception e)
        {
            // A store may throw before returning a task; the failure belongs to this chunk, in order.
            return (ValueTask.FromException<int>(e), buffer);
        }
    }

    private static async ValueTask<int> ReadChunkAsync(ValueTask<int> read, SessionKey key, int index)
    {
        try
        {
            return await read.ConfigureAwait(false);
        }
        catch (SnapshotChunkNotFoundException e)
        {
            throw new SnapshotCorruptException($"Snapshot chunk {index} of session '{key.SessionId}' is missing.", e);
        }
        catch (ArgumentException e)
        {
            throw new SnapshotCorruptException($"Snapshot chunk {index} of session '{key.SessionId}' is longer than expected.", e);
        }
    }

    private static void ApplyPayload(IKvCache cache, Span<float> logits, long stateLength, long offset, ReadOnlySpan<byte> chunk)
    {
        if (offset < stateLength)
        {
            int n = (int)Math.Min(chunk.Length, stateLength - offset);
            cache.WriteState(offset, chunk[..n]);
            chunk = chunk[n..];
            offset += n;
        }

        if (chunk.IsEmpty)
        {
            return;
        }

        chunk.CopyTo(MemoryMarshal.AsBytes(logits)[(int)(offset - stateLength)..]);
    }

    private static void Expect<T>(string field, T expected, T actual)
        where T : IEquatable<T>
    {
        if (!expected.Equals(actual))
        {
            throw new SnapshotMismatchException(field, expected.ToString()!, actual.ToString()!);
        }
    }
}
