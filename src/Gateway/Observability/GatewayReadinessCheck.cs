using KvCache.Silo.Observability;
using KvCache.Silo.Sessions;

namespace KvCache.Gateway.Observability;

/// <summary>
/// Ready once the gateway can serve a model: in process, the model is loaded; routed, a silo serving one has
/// been read from membership. A gateway with nothing to route to gets no traffic from its Service.
/// </summary>
internal sealed class GatewayReadinessCheck(ISessionService sessions, IHostApplicationLifetime lifetime) : IReadinessCheck
{
    public ValueTask<bool> IsReadyAsync(CancellationToken cancellationToken) =>
        ValueTask.FromResult(!lifetime.ApplicationStopping.IsCancellationRequested && sessions.ListModels().Count > 0);
}
