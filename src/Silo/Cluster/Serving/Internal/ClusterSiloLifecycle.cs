using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Runtime;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Cluster.Serving.Internal;

/// <summary>
/// A cluster silo's life in the membership table: joins once the internal endpoint listens, heartbeats, stops
/// the process when the cluster declares it dead, and on shutdown (SIGTERM) marks itself ShuttingDown, spills
/// its sessions (their directory entries go with them) and only then leaves.
/// </summary>
/// <remarks>Registered after the silo's own lifecycle service, so it stops first: the spill happens while still a member.</remarks>
internal sealed class ClusterSiloLifecycle(
    MembershipAgent agent,
    SessionCatalog catalog,
    IHostApplicationLifetime lifetime,
    IOptions<ClusterOptions> options,
    ILogger<ClusterSiloLifecycle> logger) : BackgroundService
{
    private readonly TaskCompletionSource _joined = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _draining;

    /// <summary>Shutting down: sessions active here finish, no new ones activate.</summary>
    public bool IsDraining => _draining;

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

        if (!agent.DeclaredDead.IsCancellationRequested)
        {
            await agent.ShutDownAsync(cancellationToken);
        }

        await catalog.SpillAllAsync();
        await agent.StopAsync(cancellationToken);
        ClusterSiloLog.Left(logger, agent.SiloAddress);
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

    [LoggerMessage(513, LogLevel.Information, "Silo {Silo} spilled its sessions and left the cluster")]
    public static partial void Left(ILogger logger, SiloAddress silo);
}
