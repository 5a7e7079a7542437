using Microsoft.Extensions.Options;

namespace KvCache.Silo.Cluster.Membership.Internal;

/// <summary>A cluster silo's view: the membership table, read at each decision, under the lease rule.</summary>
internal sealed class MembershipSiloStatusOracle(
    IMembershipTable table,
    MembershipAgent agent,
    IOptions<MembershipOptions> options,
    TimeProvider time) : ISiloStatusOracle
{
    public SiloAddress SiloAddress => agent.SiloAddress;

    public async ValueTask<bool> IsLiveAsync(SiloAddress silo, CancellationToken cancellationToken)
    {
        if (silo == agent.SiloAddress)
        {
            return !agent.DeclaredDead.IsCancellationRequested;
        }

        var data = await table.ReadAllAsync(cancellationToken).ConfigureAwait(false);
        return data.Find(silo) is { } row && row.Entry.IsLive(time.GetUtcNow(), options.Value.LeaseDuration);
    }
}
