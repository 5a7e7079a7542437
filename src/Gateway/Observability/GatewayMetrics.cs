using KvCache.Silo.Observability;

namespace KvCache.Gateway.Observability;

/// <summary>What the gateway counts while routing.</summary>
public sealed class GatewayMetrics : IMetricsSource
{
    private long _failovers;

    /// <summary>Forwarded calls or decode streams that lost their silo and were placed again on another.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    public void Failover() => Interlocked.Increment(ref _failovers);

    public void WriteTo(PrometheusTextWriter writer) =>
        writer.Counter("kvcache_gateway_failovers_total", "Calls and decode streams moved to another silo after theirs failed.", Failovers);
}
