namespace KvCache.Silo.Observability;

/// <summary>
/// What a silo counts as it serves sessions; gauges that can be read off live state (active sessions, cache
/// bytes) are not kept here but read on each scrape by <see cref="SiloMetricsSource"/>.
/// </summary>
public sealed class SiloMetrics
{
    private long _decodesInFlight;
    private long _tokensDecoded;

    /// <summary>Decode turns running or waiting for their session's turn: the silo's decode queue depth.</summary>
    public long DecodesInFlight => Interlocked.Read(ref _decodesInFlight);

    /// <summary>Tokens sampled by the model (replayed tokens are not counted); its rate is tokens/s.</summary>
    public long TokensDecoded => Interlocked.Read(ref _tokensDecoded);

    /// <summary>Snapshots written when a session left memory (idle, memory pressure, request, shutdown).</summary>
    public DurationCounter Spills { get; } = new();

    /// <summary>Activations that rebuilt a non-empty session from its snapshot and token log.</summary>
    public DurationCounter Restores { get; } = new();

    /// <summary>Sessions moved live from this silo to another (drain on SIGTERM, rebalancing, explicit requests).</summary>
    public DurationCounter Migrations { get; } = new();

    /// <summary>Counts a decode as in flight until the returned scope is disposed.</summary>
    public DecodeScope TrackDecode()
    {
        Interlocked.Increment(ref _decodesInFlight);
        return new DecodeScope(this);
    }

    internal void DecodeFinished() => Interlocked.Decrement(ref _decodesInFlight);

    public void TokenDecoded() => Interlocked.Increment(ref _tokensDecoded);
}

/// <summary>One decode in flight; disposing it ends it.</summary>
public readonly struct DecodeScope(SiloMetrics metrics) : IDisposable
{
    public void Dispose() => metrics.DecodeFinished();
}
