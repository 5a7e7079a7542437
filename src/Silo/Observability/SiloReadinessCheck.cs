using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Models;
using Microsoft.Extensions.Hosting;

namespace KvCache.Silo.Observability;

/// <summary>
/// Ready once the models are loaded and the membership table lists this silo as live (in a single-node process
/// the local oracle answers); not ready once the host is stopping, so a rollout waits for a replacement.
/// </summary>
internal sealed class SiloReadinessCheck(ModelCatalog models, ISiloStatusOracle oracle, IHostApplicationLifetime lifetime) : IReadinessCheck
{
    public async ValueTask<bool> IsReadyAsync(CancellationToken cancellationToken) =>
        !lifetime.ApplicationStopping.IsCancellationRequested
        && models.All.Count > 0
        && await oracle.IsLiveAsync(oracle.SiloAddress, cancellationToken);
}
