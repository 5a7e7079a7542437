using KvCache.Contracts.Snapshots;

namespace KvCache.Silo.Snapshots;

/// <summary>How snapshots are cut and moved.</summary>
public sealed class SnapshotOptions
{
    public static SnapshotOptions Default { get; } = new();

    /// <summary>Bytes per chunk, at most <see cref="SnapshotHeader.MaxChunkSize"/> (1 MiB moves fastest through Redis).</summary>
    public int ChunkSize { get; init; } = SnapshotHeader.MaxChunkSize;

    /// <summary>Chunk writes or reads in flight at once, so the store pipelines them.</summary>
    public int MaxInFlight { get; init; } = 8;

    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ChunkSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ChunkSize, SnapshotHeader.MaxChunkSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxInFlight);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxInFlight, 256);
    }
}
