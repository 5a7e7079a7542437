using KvCache.Silo.Models;
using Microsoft.Extensions.Hosting;

namespace KvCache.Silo.Observability;

/// <summary>
/// Ready once the models are loaded and Orleans' membership lists this silo as active; not ready once the host is
/// stopping, so a rollout waits for a replacement.
/// </summary>
internal sealed class SiloReadinessCheck(
    ModelCatalog models,
    IClusterMembershipService membership,
    ILocalSiloDetails local,
    IHostApplicationLifetime lifetime) : IReadinessCheck
{
    public ValueTask<bool> IsReadyAsync(CancellationToken cancellationToken) =>
        ValueTask.FromResult(
            !lifetime.ApplicationStopping.IsCancellationRequested
            && models.All.Count > 0
            && membership.CurrentSnapshot.GetSiloStatus(local.SiloAddress) == SiloStatus.Active);
}
