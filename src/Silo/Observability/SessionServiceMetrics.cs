namespace KvCache.Silo.Observability;

/// <summary>What a gateway's session service counts while it rides out silo failures.</summary>
public sealed class SessionServiceMetrics : IMetricsSource
{
    private long _failovers;

    /// <summary>Calls and decode streams that lost their silo (or met a moving session) and were sent again.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    public void Failover() => Interlocked.Increment(ref _failovers);

    public void WriteTo(PrometheusTextWriter writer) =>
        writer.Counter("kvcache_gateway_failovers_total", "Calls and decode streams moved to another silo after theirs failed.", Failovers);
}
