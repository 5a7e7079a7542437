using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace KvCache.Silo.Observability;

/// <summary>The <see cref="IReadinessCheck"/>s as one ASP.NET Core health check, which gRPC's health service reports.</summary>
public sealed class ReadinessHealthCheck(IEnumerable<IReadinessCheck> checks) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        foreach (var check in checks)
        {
            if (!await check.IsReadyAsync(cancellationToken))
            {
                return HealthCheckResult.Unhealthy($"not ready: {check.GetType().Name}");
            }
        }

        return HealthCheckResult.Healthy();
    }
}
