namespace KvCache.Silo.Storage;

/// <summary>A snapshot chunk is not stored (never written, or deleted when another snapshot replaced it).</summary>
public sealed class SnapshotChunkNotFoundException(SessionKey key, long snapshotId, int index)
    : Exception($"Chunk {index} of snapshot {snapshotId} of session '{key.SessionId}' is not stored.")
{
    public SessionKey Key { get; } = key;
    public long SnapshotId { get; } = snapshotId;
    public int Index { get; } = index;
}
