namespace KvCache.Contracts.Snapshots;

/// <summary>Bytes that are not a valid snapshot header of a supported format version.</summary>
public sealed class SnapshotFormatException : Exception
{
    public SnapshotFormatException(string message) : base(message)
    {
    }

    public SnapshotFormatException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
