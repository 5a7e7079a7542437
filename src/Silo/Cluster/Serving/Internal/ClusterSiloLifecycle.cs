using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Migration.Internal;
using KvCache.Silo.Runtime;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Cluster.Serving.Internal;

/// <summary>
/// A cluster silo's life in the membership table: joins once the internal endpoint listens, heartbeats, moves a
/// share of its sessions to silos that join, stops the process when the cluster declares it dead, and on shutdown
/// (SIGTERM, or a Drain call) marks itself ShuttingDown, moves its sessions to the other live silos (spilling any
/// that none takes) and only then leaves.
/// </summary>
/// <remarks>Registered after the silo's own lifecycle service, so it stops first: the drain happens while still a member.</remarks>
internal sealed class ClusterSiloLifecycle(
    MembershipAgent agent,
    SessionCatalog catalog,
    SessionMigrator migrator,
    IHostApplicationLifetime lifetime,
    IOptions<ClusterOptions> options,
    IOptions<MembershipOptions> membership,
    TimeProvider time,
    ILogger<ClusterSiloLifecycle> logger) : BackgroundService
{
    private readonly TaskCompletionSource _joined = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _drainGate = new();
    private Task<(int Moved, int Spilled)>? _drain;
    private volatile bool _draining;

    /// <summary>Shutting down: sessions active here finish or move, no new ones activate.</summary>
    public bool IsDraining => _draining;

    /// <summary>Moves every session off this silo, once; later callers share the first drain.</summary>
    public Task<(int Moved, int Spilled)> DrainAsync()
    {
        lock (_drainGate)
        {
            return _drain ??= DrainCoreAsync();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Joining before the endpoint listens would make the silo a placement target it cannot serve yet.
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
        using (stoppingToken.Register(() => started.TrySetCanceled(stoppingToken)))
        {
            await started.Task;
        }

        try
        {
            await agent.JoinAsync(stoppingToken);
            await agent.StartAsync(stoppingToken);
            agent.DeclaredDead.Register(OnDeclaredDead);
            ClusterSiloLog.Joined(logger, agent.SiloAddress, options.Value.AdvertisedEndpoint);
            _joined.TrySetResult();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            ClusterSiloLog.JoinFailed(logger, ex, agent.SiloAddress);
            Environment.ExitCode = 1;
            lifetime.StopApplication();
            return;
        }

        if (options.Value.MaxSessionsMovedPerJoin > 0)
        {
            await WatchJoinsAsync(stoppingToken);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _draining = true;
        await base.StopAsync(cancellationToken);
        if (!_joined.Task.IsCompletedSuccessfully)
        {
            return;
        }

        var (moved, spilled) = await DrainAsync();
        await agent.StopAsync(cancellationToken);
        ClusterSiloLog.Left(logger, agent.SiloAddress, moved, spilled);
    }

    private async Task<(int Moved, int Spilled)> DrainCoreAsync()
    {
        _draining = true;
        if (agent.DeclaredDead.IsCancellationRequested)
        {
            // Dead: the sessions are someone else's already; the epochs refuse whatever this silo would write.
            await catalog.SpillAllAsync();
            return (0, 0);
        }

        // ShuttingDown first: no gateway places a session here while they move out.
        await agent.ShutDownAsync(CancellationToken.None);
        return await migrator.DrainAsync(CancellationToken.None);
    }

    /// <summary>Each membership round: a silo newly Active gets a share of this silo's idle sessions.</summary>
    private async Task WatchJoinsAsync(CancellationToken stoppingToken)
    {
        HashSet<SiloAddress>? known = null;
        using var timer = new PeriodicTimer(membership.Value.IAmAlivePeriod, time);
        try
        {
            while (!_draining && await timer.WaitForNextTickAsync(stoppingToken))
            {
                var members = agent.Members;
                var active = members.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress).ToHashSet();
                if (known is not null)
                {
                    foreach (var newcomer in active.Where(s => s != agent.SiloAddress && !known.Contains(s)))
                    {
                        await migrator.RebalanceOntoAsync(newcomer, active.Count, options.Value.MaxSessionsMovedPerJoin, stoppingToken);
                    }
                }

                // Silos already there when this one joined are no newcomers.
                known = members.Where(m => m.Status != SiloStatus.Joining).Select(m => m.SiloAddress).ToHashSet();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private void OnDeclaredDead()
    {
        if (!_draining)
        {
            // Orleans' rule: a silo the cluster declared dead never serves again; its sessions are taken over.
            ClusterSiloLog.StoppingDead(logger, agent.SiloAddress);
            lifetime.StopApplication();
        }
    }
}

internal static partial class ClusterSiloLog
{
    [LoggerMessage(510, LogLevel.Information, "Silo {Silo} joined the cluster, serving at {Endpoint}")]
    public static partial void Joined(ILogger logger, SiloAddress silo, string endpoint);

    [LoggerMessage(511, LogLevel.Critical, "Silo {Silo} could not join the cluster; stopping")]
    public static partial void JoinFailed(ILogger logger, Exception exception, SiloAddress silo);

    [LoggerMessage(512, LogLevel.Critical, "Silo {Silo} was declared dead by the cluster; stopping without serving again")]
    public static partial void StoppingDead(ILogger logger, SiloAddress silo);

    [LoggerMessage(513, LogLevel.Information, "Silo {Silo} moved {Moved} sessions to other silos, spilled {Spilled}, and left the cluster")]
    public static partial void Left(ILogger logger, SiloAddress silo, int moved, int spilled);
}
