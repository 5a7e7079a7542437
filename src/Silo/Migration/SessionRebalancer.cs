using KvCache.Silo.Hosting;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Migration;

/// <summary>
/// When a silo joins, this silo moves it its fair share of sessions (those in its memory / the active silos), at
/// most <see cref="ClusterOptions.MaxSessionsMovedPerJoin"/>, idle ones only and least recently used first, so no
/// caller waits on a move it did not need.
/// </summary>
internal sealed class SessionRebalancer(
    IClusterMembershipService membership,
    IClusterManifestProvider manifests,
    SiloLoads loads,
    ResidentSessions resident,
    IGrainFactory grains,
    IOptions<ClusterOptions> options,
    ILogger<SessionRebalancer> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    private static readonly TimeSpan ManifestWait = TimeSpan.FromSeconds(10);
    private readonly CancellationTokenSource _stopping = new();
    private Task? _loop;

    void ILifecycleParticipant<ISiloLifecycle>.Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(
            nameof(SessionRebalancer),
            ServiceLifecycleStage.Active,
            _ =>
            {
                if (options.Value.MaxSessionsMovedPerJoin > 0)
                {
                    _loop = WatchJoinsAsync(_stopping.Token);
                }

                return Task.CompletedTask;
            },
            async _ =>
            {
                await _stopping.CancelAsync();
                if (_loop is not null)
                {
                    await _loop;
                }
            });

    private async Task WatchJoinsAsync(CancellationToken stopping)
    {
        HashSet<SiloAddress>? known = null;
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stopping))
            {
                var active = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).ToList();
                if (known is not null && !loads.IsDraining)
                {
                    foreach (var newcomer in active.Where(m => !m.SiloAddress.Equals(loads.LocalAddress) && !known.Contains(m.SiloAddress)))
                    {
                        await WaitForGrainTypesAsync(newcomer.SiloAddress, stopping);
                        await MoveShareAsync(newcomer.Name, active.Count, stopping);
                    }
                }

                // Silos already there when this one joined are no newcomers.
                known = snapshot.Members.Values.Where(m => m.Status != SiloStatus.Joining && m.Status != SiloStatus.Created).Select(m => m.SiloAddress).ToHashSet();
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Waits (a few seconds at most) until this silo's cluster manifest lists the newcomer's grain types: Orleans
    /// places only on silos it knows can host the grain, so a move sent earlier would land on another silo.
    /// </summary>
    private async Task WaitForGrainTypesAsync(SiloAddress newcomer, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + ManifestWait;
        while (!manifests.Current.Silos.ContainsKey(newcomer) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken);
        }
    }

    private async Task MoveShareAsync(string newcomer, int activeSilos, CancellationToken cancellationToken)
    {
        var sessions = resident.LeastRecentlyUsedFirst();
        var share = Math.Min(options.Value.MaxSessionsMovedPerJoin, sessions.Count / Math.Max(1, activeSilos));
        var moved = 0;
        foreach (var session in sessions.Where(s => s.IsIdle).Take(share))
        {
            try
            {
                await SessionMigrations.MoveAsync(grains, session.Key, newcomer, cancellationToken);
                moved++;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                SessionDrainLog.MoveFailed(logger, session.Key.Tenant, session.Key.SessionId, ex.Message);
                break;
            }
        }

        SessionRebalancerLog.Rebalanced(logger, moved, newcomer);
    }
}

internal static partial class SessionRebalancerLog
{
    [LoggerMessage(523, LogLevel.Information, "Rebalanced {Moved} sessions onto {Silo}, which joined the cluster")]
    public static partial void Rebalanced(ILogger logger, int moved, string silo);
}
