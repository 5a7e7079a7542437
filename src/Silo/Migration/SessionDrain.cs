using KvCache.Silo.Hosting;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions;
using KvCache.Silo.Sessions.Internal;
using Microsoft.Extensions.Logging;

namespace KvCache.Silo.Migration;

/// <summary>
/// Drain: before the silo leaves the cluster (SIGTERM, or the operator's DrainSilo) it marks itself draining, so
/// nothing new is placed on it, and moves every session in its memory to the other active silos, least loaded first;
/// a session none takes is snapshotted instead and resumes wherever its next call lands. Runs once.
/// </summary>
/// <remarks>Stops with Orleans' <see cref="ServiceLifecycleStage.Active"/> stage: first in a graceful shutdown, while
/// the silo is still a full member, so the moves run before Orleans deactivates what is left.</remarks>
internal sealed class SessionDrain(
    SiloLoads loads,
    ResidentSessions resident,
    IGrainFactory grains,
    ILogger<SessionDrain> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    private const int Parallelism = 4;
    private readonly Lock _gate = new();
    private Task<DrainResult>? _drain;

    /// <param name="cancellationToken">Ends the moves early (an ungraceful stop): Orleans deactivates the sessions left,
    /// and their token logs hold every token.</param>
    public Task<DrainResult> DrainAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            return _drain ??= DrainCoreAsync(cancellationToken);
        }
    }

    void ILifecycleParticipant<ISiloLifecycle>.Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(SessionDrain), ServiceLifecycleStage.Active, _ => Task.CompletedTask, DrainAsync);

    private async Task<DrainResult> DrainCoreAsync(CancellationToken stopping)
    {
        await loads.BeginDrainAsync();
        var moved = 0;
        var spilled = 0;
        await Parallel.ForEachAsync(
            resident.LeastRecentlyUsedFirst(),
            new ParallelOptions { MaxDegreeOfParallelism = Parallelism },
            async (session, cancellationToken) =>
            {
                if (stopping.IsCancellationRequested)
                {
                    return;
                }

                try
                {
                    await SessionMigrations.MoveAsync(grains, session.Key, target: null, cancellationToken);
                    Interlocked.Increment(ref moved);
                    return;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    SessionDrainLog.MoveFailed(logger, session.Key.Tenant, session.Key.SessionId, ex.Message);
                }

                try
                {
                    await grains.GetGrain<ISessionGrain>(SessionGrainKey.Format(session.Key)).SpillAsync(cancellationToken);
                    Interlocked.Increment(ref spilled);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // Orleans deactivates it with the silo, which snapshots it; its token log holds every token anyway.
                    SessionDrainLog.MoveFailed(logger, session.Key.Tenant, session.Key.SessionId, ex.Message);
                }
            });
        SessionDrainLog.Drained(logger, loads.LocalSiloName, moved, spilled);
        return new DrainResult(moved, spilled);
    }
}

internal static partial class SessionDrainLog
{
    [LoggerMessage(521, LogLevel.Warning, "Could not move session {Tenant}/{SessionId} off this silo: {Reason}")]
    public static partial void MoveFailed(ILogger logger, string tenant, string sessionId, string reason);

    [LoggerMessage(522, LogLevel.Information, "Silo {Silo} drained: moved {Moved} sessions to other silos, spilled {Spilled}, and is leaving the cluster")]
    public static partial void Drained(ILogger logger, string silo, int moved, int spilled);
}
