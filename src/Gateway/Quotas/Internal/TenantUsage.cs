namespace KvCache.Gateway.Quotas.Internal;

/// <summary>
/// A tenant's sessions as the quotas see them: each session's position and bytes per token, loaded from the
/// session store on first use (so counts survive restarts) and kept current by this gateway's calls.
/// </summary>
internal sealed class TenantUsage
{
    private readonly Dictionary<string, (long Position, long BytesPerToken)> _sessions = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private long _cacheBytes;

    /// <summary>Serializes session creation (check, then create) and loading.</summary>
    public SemaphoreSlim Gate { get; } = new(1, 1);

    public bool Loaded { get; private set; }

    public int SessionCount
    {
        get
        {
            lock (_lock)
            {
                return _sessions.Count;
            }
        }
    }

    public long CacheBytes
    {
        get
        {
            lock (_lock)
            {
                return _cacheBytes;
            }
        }
    }

    /// <summary>Replaces everything with what the store holds.</summary>
    public void Reset(IEnumerable<(string Id, long Position, long BytesPerToken)> sessions)
    {
        lock (_lock)
        {
            _sessions.Clear();
            _cacheBytes = 0;
            foreach (var (id, position, bytesPerToken) in sessions)
            {
                _sessions[id] = (position, bytesPerToken);
                _cacheBytes += position * bytesPerToken;
            }

            Loaded = true;
        }
    }

    public bool TryGetBytesPerToken(string sessionId, out long bytesPerToken)
    {
        lock (_lock)
        {
            var found = _sessions.TryGetValue(sessionId, out var entry);
            bytesPerToken = entry.BytesPerToken;
            return found;
        }
    }

    /// <summary>Records a session's position (adding the session if new).</summary>
    public void Set(string sessionId, long position, long bytesPerToken)
    {
        lock (_lock)
        {
            if (_sessions.TryGetValue(sessionId, out var old))
            {
                _cacheBytes -= old.Position * old.BytesPerToken;
            }

            _sessions[sessionId] = (position, bytesPerToken);
            _cacheBytes += position * bytesPerToken;
        }
    }

    /// <summary>Moves a known session to a later position (a position never moves back).</summary>
    public void Advance(string sessionId, long position)
    {
        lock (_lock)
        {
            if (_sessions.TryGetValue(sessionId, out var old) && position > old.Position)
            {
                _sessions[sessionId] = (position, old.BytesPerToken);
                _cacheBytes += (position - old.Position) * old.BytesPerToken;
            }
        }
    }

    public void Remove(string sessionId)
    {
        lock (_lock)
        {
            if (_sessions.Remove(sessionId, out var old))
            {
                _cacheBytes -= old.Position * old.BytesPerToken;
            }
        }
    }
}
