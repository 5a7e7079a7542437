using KvCache.Silo.Observability;
using KvCache.Silo.Sessions;

namespace KvCache.Gateway.Observability;

/// <summary>
/// Ready once the gateway can serve a model: a silo (its own, or one it reaches through Orleans) lists one. A gateway
/// with nothing to route to gets no traffic from its Service.
/// </summary>
internal sealed class GatewayReadinessCheck(ISessionService sessions, IHostApplicationLifetime lifetime) : IReadinessCheck
{
    private const string ProbeTenant = "readiness-probe";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    public async ValueTask<bool> IsReadyAsync(CancellationToken cancellationToken)
    {
        if (lifetime.ApplicationStopping.IsCancellationRequested)
        {
            return false;
        }

        try
        {
            var models = await sessions.ListModelsAsync(ProbeTenant, cancellationToken).WaitAsync(Timeout, cancellationToken);
            return models.Count > 0;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // Not ready is the answer, not a fault: before an Orleans client has reached a silo it cannot even
            // resolve the grain (ArgumentException), and a failing silo times out or is unavailable.
            return false;
        }
    }
}
