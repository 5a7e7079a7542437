namespace KvCache.Gateway.Quotas.Internal;

/// <summary>A token bucket refilled continuously at a rate, up to a capacity, on the given clock.</summary>
internal sealed class TokenBucket
{
    private readonly double _rate;
    private readonly double _capacity;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private double _tokens;
    private long _refilledAt;

    public TokenBucket(double tokensPerSecond, int capacity, TimeProvider time)
    {
        _rate = tokensPerSecond;
        _capacity = capacity;
        _time = time;
        _tokens = capacity;
        _refilledAt = time.GetTimestamp();
    }

    /// <summary>Takes one token if there is one.</summary>
    public bool TryTake()
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            _tokens = Math.Min(_capacity, _tokens + (_time.GetElapsedTime(_refilledAt, now).TotalSeconds * _rate));
            _refilledAt = now;
            if (_tokens < 1)
            {
                return false;
            }

            _tokens -= 1;
            return true;
        }
    }

    /// <summary>Gives back a token taken for a step that did not happen.</summary>
    public void Return()
    {
        lock (_lock)
        {
            _tokens = Math.Min(_capacity, _tokens + 1);
        }
    }

    /// <summary>How long until one token is available (zero if one is).</summary>
    public TimeSpan UntilNext()
    {
        lock (_lock)
        {
            return _tokens >= 1 ? TimeSpan.Zero : TimeSpan.FromSeconds((1 - _tokens) / _rate);
        }
    }
}
