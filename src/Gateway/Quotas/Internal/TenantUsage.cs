namespace KvCache.Gateway.Quotas.Internal;

/// <summary>
/// A tenant's sessions as the quotas see them: each session's position and the cache bytes it really holds (its
/// codec's count, which need not be position · bytes per token: fourier holds full-size tokens in its window, YOCO
/// constant rings), loaded from the session store on first use (so counts survive restarts), settled from the store
/// after calls that grow a session, and estimated in between.
/// </summary>
internal sealed class TenantUsage
{
    private readonly Dictionary<string, Entry> _sessions = new(StringComparer.Ordinal);
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
    public void Reset(IEnumerable<(string Id, long Position, long CacheBytes, long BytesPerToken)> sessions)
    {
        lock (_lock)
        {
            _sessions.Clear();
            _cacheBytes = 0;
            foreach (var (id, position, cacheBytes, bytesPerToken) in sessions)
            {
                _sessions[id] = new Entry(position, cacheBytes, bytesPerToken);
                _cacheBytes += cacheBytes;
            }

            Loaded = true;
        }
    }

    /// <summary>What <paramref name="tokens"/> more tokens would add to the session, if it is known.</summary>
    public bool TryEstimate(string sessionId, long tokens, out long bytes)
    {
        lock (_lock)
        {
            var found = _sessions.TryGetValue(sessionId, out var entry);
            bytes = found ? tokens * entry.Rate : 0;
            return found;
        }
    }

    /// <summary>Records what a session really holds (adding the session if new).</summary>
    public void Set(string sessionId, long position, long cacheBytes, long bytesPerToken)
    {
        lock (_lock)
        {
            if (_sessions.TryGetValue(sessionId, out var old))
            {
                _cacheBytes -= old.CacheBytes;
            }

            _sessions[sessionId] = new Entry(position, cacheBytes, bytesPerToken);
            _cacheBytes += cacheBytes;
        }
    }

    /// <summary>Moves a known session to a later position, estimating what it holds until it is settled (a position
    /// never moves back).</summary>
    public void Advance(string sessionId, long position)
    {
        lock (_lock)
        {
            if (_sessions.TryGetValue(sessionId, out var old) && position > old.Position)
            {
                var added = (position - old.Position) * old.Rate;
                _sessions[sessionId] = old with { Position = position, CacheBytes = old.CacheBytes + added };
                _cacheBytes += added;
            }
        }
    }

    public void Remove(string sessionId)
    {
        lock (_lock)
        {
            if (_sessions.Remove(sessionId, out var old))
            {
                _cacheBytes -= old.CacheBytes;
            }
        }
    }

    /// <param name="BytesPerToken">What one more token adds to a long session (the codec's advertised rate).</param>
    private readonly record struct Entry(long Position, long CacheBytes, long BytesPerToken)
    {
        /// <summary>Bytes per token to expect next: the rate the session has held so far when that is more than the
        /// advertised one (a fourier session inside its window holds full-size tokens).</summary>
        public long Rate => Position > 0 ? Math.Max(BytesPerToken, (CacheBytes + Position - 1) / Position) : BytesPerToken;
    }
}
