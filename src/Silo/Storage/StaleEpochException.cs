namespace KvCache.Silo.Storage;

/// <summary>
/// A fenced write was refused: <see cref="Epoch"/> is not the session's current epoch, so the writer lost
/// ownership (another activation took a newer epoch since) or never had it. Nothing was written.
/// </summary>
public sealed class StaleEpochException(SessionKey key, long epoch)
    : Exception($"Session '{key.SessionId}' is no longer owned with epoch {epoch}: another activation took it over.")
{
    public SessionKey Key { get; } = key;

    public long Epoch { get; } = epoch;
}
