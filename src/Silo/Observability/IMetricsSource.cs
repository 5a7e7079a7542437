namespace KvCache.Silo.Observability;

/// <summary>Series a process part contributes to <c>/metrics</c>; read on every scrape.</summary>
public interface IMetricsSource
{
    void WriteTo(PrometheusTextWriter writer);
}

/// <summary>One condition of <c>/healthz/ready</c>; every registered check must pass.</summary>
public interface IReadinessCheck
{
    ValueTask<bool> IsReadyAsync(CancellationToken cancellationToken);
}
