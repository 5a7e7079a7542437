using System.Buffers.Binary;
using System.Text;

namespace KvCache.Contracts.Snapshots;

/// <summary>
/// Describes a snapshot: a session's serialized KV cache at <see cref="Position"/> followed by the next-token
/// logits (float32 little-endian) it had there, stored as <see cref="ChunkCount"/> chunks of
/// <see cref="ChunkSize"/> bytes (the last may be shorter).
/// </summary>
/// <param name="Checksum">XXH64 (seed 0) of all payload bytes in order.</param>
public sealed record SnapshotHeader(
    string ModelId,
    string ModelFingerprint,
    string CodecId,
    int Position,
    long StateLength,
    int LogitsLength,
    int ChunkSize,
    int ChunkCount,
    ulong Checksum)
{
    /// <summary>The format this code writes; decoding refuses any other.</summary>
    public const ushort CurrentFormatVersion = 1;

    /// <summary>Largest chunk a snapshot may use (Redis moves 1 MiB values fast, larger ones crawl).</summary>
    public const int MaxChunkSize = 1 << 20;

    private const uint Magic = 0x4E53564B; // "KVSN" read as little-endian
    private const int MaxStringBytes = 1024;

    // magic, version, three strings' lengths, position, state length, logits length, chunk size, chunk count, checksum, header hash
    private const int FixedBytes = 4 + 2 + 3 * 2 + 4 + 8 + 4 + 4 + 4 + 8 + 8;

    public ushort FormatVersion { get; init; } = CurrentFormatVersion;

    /// <summary>Bytes of payload: state then logits.</summary>
    public long PayloadLength => StateLength + LogitsLength * 4L;

    /// <summary>Chunks needed for <paramref name="payloadLength"/> bytes.</summary>
    public static int ChunksFor(long payloadLength, int chunkSize) => checked((int)((payloadLength + chunkSize - 1) / chunkSize));

    /// <summary>Length of chunk <paramref name="index"/> (the last one holds the remainder).</summary>
    public int ChunkLength(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, ChunkCount);
        return (int)Math.Min(ChunkSize, PayloadLength - (long)index * ChunkSize);
    }

    public int EncodedLength =>
        FixedBytes + Encoding.UTF8.GetByteCount(ModelId) + Encoding.UTF8.GetByteCount(ModelFingerprint) + Encoding.UTF8.GetByteCount(CodecId);

    public byte[] Encode()
    {
        var bytes = new byte[EncodedLength];
        Encode(bytes);
        return bytes;
    }

    /// <summary>Writes the header into destination; returns the bytes written (<see cref="EncodedLength"/>).</summary>
    public int Encode(Span<byte> destination)
    {
        Validate();
        int length = EncodedLength;
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, length, nameof(destination));
        var w = destination[..length];
        BinaryPrimitives.WriteUInt32LittleEndian(w, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(w[4..], FormatVersion);
        int o = 6;
        o += WriteString(w[o..], ModelId);
        o += WriteString(w[o..], ModelFingerprint);
        o += WriteString(w[o..], CodecId);
        BinaryPrimitives.WriteInt32LittleEndian(w[o..], Position);
        BinaryPrimitives.WriteInt64LittleEndian(w[(o + 4)..], StateLength);
        BinaryPrimitives.WriteInt32LittleEndian(w[(o + 12)..], LogitsLength);
        BinaryPrimitives.WriteInt32LittleEndian(w[(o + 16)..], ChunkSize);
        BinaryPrimitives.WriteInt32LittleEndian(w[(o + 20)..], ChunkCount);
        BinaryPrimitives.WriteUInt64LittleEndian(w[(o + 24)..], Checksum);
        o += 32;
        // The header hashes itself so that garbage or a torn header is told apart from a real mismatch.
        BinaryPrimitives.WriteUInt64LittleEndian(w[o..], XxHash64.Hash(w[..o]));
        return length;
    }

    /// <exception cref="SnapshotFormatException">The bytes are not a valid header of this format version.</exception>
    public static SnapshotHeader Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < FixedBytes || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic)
        {
            throw new SnapshotFormatException("Not a snapshot header (bad magic or too short).");
        }

        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]);
        if (version != CurrentFormatVersion)
        {
            throw new SnapshotFormatException($"Snapshot format version {version} is not supported (expected {CurrentFormatVersion}).");
        }

        int o = 6;
        string model = ReadString(bytes, ref o);
        string fingerprint = ReadString(bytes, ref o);
        string codec = ReadString(bytes, ref o);
        if (bytes.Length != o + 40)
        {
            throw new SnapshotFormatException($"Snapshot header has {bytes.Length} bytes, expected {o + 40}.");
        }

        ulong headerHash = BinaryPrimitives.ReadUInt64LittleEndian(bytes[(o + 32)..]);
        if (headerHash != XxHash64.Hash(bytes[..(o + 32)]))
        {
            throw new SnapshotFormatException("Snapshot header checksum does not match.");
        }

        var header = new SnapshotHeader(
            model,
            fingerprint,
            codec,
            BinaryPrimitives.ReadInt32LittleEndian(bytes[o..]),
            BinaryPrimitives.ReadInt64LittleEndian(bytes[(o + 4)..]),
            BinaryPrimitives.ReadInt32LittleEndian(bytes[(o + 12)..]),
            BinaryPrimitives.ReadInt32LittleEndian(bytes[(o + 16)..]),
            BinaryPrimitives.ReadInt32LittleEndian(bytes[(o + 20)..]),
            BinaryPrimitives.ReadUInt64LittleEndian(bytes[(o + 24)..]))
        {
            FormatVersion = version,
        };
        try
        {
            header.Validate();
        }
        catch (ArgumentException e)
        {
            throw new SnapshotFormatException($"Snapshot header is inconsistent: {e.Message}", e);
        }

        return header;
    }

    private void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(Position);
        ArgumentOutOfRangeException.ThrowIfNegative(StateLength);
        ArgumentOutOfRangeException.ThrowIfNegative(LogitsLength);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ChunkSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ChunkSize, MaxChunkSize);
        if (ChunkCount != ChunksFor(PayloadLength, ChunkSize))
        {
            throw new ArgumentException($"{ChunkCount} chunks of {ChunkSize} bytes cannot hold {PayloadLength} bytes.");
        }
    }

    private static int WriteString(Span<byte> destination, string value)
    {
        int n = Encoding.UTF8.GetBytes(value, destination[2..]);
        if (n > MaxStringBytes)
        {
            throw new ArgumentException($"Snapshot header string '{value[..32]}...' is longer than {MaxStringBytes} bytes.");
        }

        BinaryPrimitives.WriteUInt16LittleEndian(destination, (ushort)n);
        return n + 2;
    }

    private static string ReadString(ReadOnlySpan<byte> bytes, ref int offset)
    {
        if (bytes.Length < offset + 2)
        {
            throw new SnapshotFormatException("Snapshot header is truncated.");
        }

        int n = BinaryPrimitives.ReadUInt16LittleEndian(bytes[offset..]);
        if (n > MaxStringBytes || bytes.Length < offset + 2 + n)
        {
            throw new SnapshotFormatException("Snapshot header is truncated or has an oversized field.");
        }

        try
        {
            string s = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes.Slice(offset + 2, n));
            offset += 2 + n;
            return s;
        }
        catch (DecoderFallbackException e)
        {
            throw new SnapshotFormatException("Snapshot header has a field that is not UTF-8.", e);
        }
    }
}
