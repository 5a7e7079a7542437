namespace KvCache.Silo.Snapshots;

/// <summary>
/// A snapshot is intact but belongs to another model, weights or codec (or shape); it is refused, never used.
/// </summary>
public sealed class SnapshotMismatchException(string field, string expected, string actual)
    : Exception($"Snapshot refused: its {field} is '{actual}', expected '{expected}'.")
{
    public string Field { get; } = field;
    public string Expected { get; } = expected;
    public string Actual { get; } = actual;
}

/// <summary>A snapshot's header or payload is damaged or incomplete; it is refused, never used.</summary>
public sealed class SnapshotCorruptException : Exception
{
    public SnapshotCorruptException(string message) : base(message)
    {
    }

    public SnapshotCorruptException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
