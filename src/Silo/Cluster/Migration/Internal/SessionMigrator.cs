using System.Diagnostics;
using KvCache.Contracts.Internal.V1;
using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Serving;
using KvCache.Silo.Cluster.Serving.Internal;
using KvCache.Silo.Runtime;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Transport;
using Microsoft.Extensions.Logging;

namespace KvCache.Silo.Cluster.Migration.Internal;

/// <summary>
/// Moves sessions off this silo (Orleans' activation migration): explicit requests, drain, rebalancing onto a
/// silo that joined. The compressed cache goes through the shared spill store: the owner writes its snapshot in
/// ≤ 1 MiB chunks (pipelined, 2-3 GB/s on Redis), the target restores it — the path every resume already takes,
/// so a migration needs no second transfer format and a target that dies mid-copy loses nothing.
/// </summary>
internal sealed class SessionMigrator(
    SessionCatalog catalog,
    SiloConnections clients,
    MembershipAgent agent,
    ISessionStore store,
    ISiloStatusOracle oracle,
    ILogger<SessionMigrator> logger)
{
    private const int DrainParallelism = 4;
    private static readonly TimeSpan StatsTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Moves one session to <paramref name="target"/> (an address or endpoint), or to the least loaded other silo.</summary>
    public async Task<MigrateResult> MigrateAsync(SessionKey key, string? target, CancellationToken cancellationToken)
    {
        var to = string.IsNullOrEmpty(target)
            ? (await LoadsAsync(cancellationToken)).OrderBy(l => l.Sessions).Select(l => (SiloAddress?)l.Silo).FirstOrDefault()
                ?? throw new SessionException(SessionErrorCode.Unavailable, "No other active silo can take the session.")
            : Resolve(target);
        if (to == agent.SiloAddress)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"Silo {to} is the session's silo already.");
        }

        if (await MoveAsync(key, to, cancellationToken) is { } moved)
        {
            return moved;
        }

        // Not active here: nothing to copy, unless another live silo owns it (the caller asks that one).
        var entry = await store.Directory.LookupAsync(key, cancellationToken);
        if (entry is not null && entry.SiloAddress != agent.SiloAddress && await oracle.IsLiveAsync(entry.SiloAddress, cancellationToken))
        {
            throw SessionException.NotOwner(key.SessionId, entry.SiloAddress);
        }

        var session = await AcceptOnAsync(to, key, previous: null, cancellationToken);
        return new MigrateResult { FromSilo = "", ToSilo = to.ToString(), Position = session.Position };
    }

    /// <summary>
    /// Moves every session active here to the other active silos, least loaded first; one that none takes is
    /// snapshotted instead (it resumes wherever its next call lands).
    /// </summary>
    public async Task<(int Moved, int Spilled)> DrainAsync(CancellationToken cancellationToken)
    {
        var loads = (await LoadsAsync(cancellationToken)).ToList();
        var moved = 0;
        var spilled = 0;
        await Parallel.ForEachAsync(
            catalog.ActiveGrains(),
            new ParallelOptions { MaxDegreeOfParallelism = DrainParallelism, CancellationToken = cancellationToken },
            async (grain, ct) =>
            {
                SiloLoad? target;
                lock (loads)
                {
                    target = loads.OrderBy(l => l.Sessions).FirstOrDefault();
                    if (target is not null)
                    {
                        target.Sessions++;
                    }
                }

                try
                {
                    if (target is not null && await MoveAsync(grain.Key, target.Silo, ct) is not null)
                    {
                        Interlocked.Increment(ref moved);
                        return;
                    }
                }
                catch (SessionException ex)
                {
                    MigrationLog.MoveFailed(logger, grain.Key.Tenant, grain.Key.SessionId, target!.Silo, ex.Message);
                }

                if (await grain.TryDeactivateAsync("silo shutting down, no silo took it", wait: true))
                {
                    Interlocked.Increment(ref spilled);
                }
            });
        MigrationLog.Drained(logger, agent.SiloAddress, moved, spilled);
        return (moved, spilled);
    }

    /// <summary>
    /// A silo joined: moves it this silo's fair share (active / live silos), at most <paramref name="limit"/>,
    /// idle sessions only and least recently used first, so no caller waits on a move it did not need.
    /// </summary>
    public async Task<int> RebalanceOntoAsync(SiloAddress newcomer, int liveSilos, int limit, CancellationToken cancellationToken)
    {
        var grains = catalog.ActiveGrains();
        var share = Math.Min(limit, grains.Count / Math.Max(1, liveSilos));
        var moved = 0;
        foreach (var grain in grains.Where(g => g.IsIdle).Take(share))
        {
            try
            {
                if (await MoveAsync(grain.Key, newcomer, cancellationToken) is not null)
                {
                    moved++;
                }
            }
            catch (SessionException ex)
            {
                MigrationLog.MoveFailed(logger, grain.Key.Tenant, grain.Key.SessionId, newcomer, ex.Message);
                break;
            }
        }

        MigrationLog.Rebalanced(logger, moved, newcomer);
        return moved;
    }

    /// <summary>Hands the session active here to <paramref name="to"/>; null if it is not active here.</summary>
    private async Task<MigrateResult?> MoveAsync(SessionKey key, SiloAddress to, CancellationToken cancellationToken)
    {
        if (catalog.TryGetActive(key) is not { } grain)
        {
            return null;
        }

        var started = Stopwatch.GetTimestamp();
        (long Position, long CacheBytes) handedOver;
        try
        {
            handedOver = await grain.HandOffAsync(previous => AcceptOnAsync(to, key, previous, cancellationToken), cancellationToken);
        }
        catch (GrainDeactivatedException)
        {
            return null;
        }

        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        catalog.Metrics.Migrations.Record(Stopwatch.GetElapsedTime(started));
        MigrationLog.Migrated(logger, key.Tenant, key.SessionId, to, handedOver.Position, handedOver.CacheBytes, seconds * 1000);
        return new MigrateResult
        {
            FromSilo = agent.SiloAddress.ToString(),
            ToSilo = to.ToString(),
            Position = handedOver.Position,
            CacheBytes = handedOver.CacheBytes,
            Seconds = seconds,
        };
    }

    private async Task<KvCache.Contracts.V1.Session> AcceptOnAsync(SiloAddress to, SessionKey key, GrainAddress? previous, CancellationToken cancellationToken)
    {
        try
        {
            return await clients.Client(to).AcceptSessionAsync(
                new AcceptCall
                {
                    Tenant = key.Tenant,
                    SessionId = key.SessionId,
                    PreviousSilo = previous?.SiloAddress.ToString() ?? "",
                    PreviousActivation = previous?.ActivationId.ToString() ?? "",
                },
                clients.Options(cancellationToken));
        }
        catch (RpcException ex)
        {
            // The target did not take it: this silo still owns the session (or, if the reply alone was lost, the
            // new epoch refuses this silo's next write and the call is retried on the target).
            throw new SessionException(SessionErrorCode.Unavailable, $"Silo {to} did not take session '{key.SessionId}': {ex.Status.StatusCode} {ex.Status.Detail}", ex);
        }
    }

    /// <summary>The other Active silos (never Joining or ShuttingDown ones) and their active sessions, as they report them.</summary>
    private async Task<IReadOnlyList<SiloLoad>> LoadsAsync(CancellationToken cancellationToken)
    {
        var others = agent.Members.Where(m => m.Status == SiloStatus.Active && m.SiloAddress != agent.SiloAddress).Select(m => m.SiloAddress);
        var loads = await Task.WhenAll(others.Select(async silo =>
        {
            try
            {
                var stats = await clients.Client(silo).GetStatsAsync(new GetStatsRequest(), clients.Options(cancellationToken, DateTime.UtcNow + StatsTimeout));
                return new SiloLoad(silo) { Sessions = stats.ActiveSessions };
            }
            catch (RpcException)
            {
                // Slow to report (a busy silo) is no reason to spill instead: tried last, its AcceptSession decides.
                return new SiloLoad(silo) { Sessions = int.MaxValue / 2 };
            }
        }));
        return loads;
    }

    private SiloAddress Resolve(string target)
    {
        var members = agent.Members.Where(m => m.Status == SiloStatus.Active);
        return members.FirstOrDefault(m => m.SiloAddress.ToString() == target || m.SiloAddress.Endpoint == target)?.SiloAddress
            ?? throw new SessionException(SessionErrorCode.InvalidArgument, $"Silo '{target}' is not an active member of the cluster.");
    }

    private sealed class SiloLoad(SiloAddress silo)
    {
        public SiloAddress Silo { get; } = silo;

        public int Sessions { get; set; }
    }
}

internal static partial class MigrationLog
{
    [LoggerMessage(520, LogLevel.Information, "Migrated session {Tenant}/{SessionId} to {Target} at position {Position}: {Bytes} cache bytes, unavailable {Milliseconds:F1} ms")]
    public static partial void Migrated(ILogger logger, string tenant, string sessionId, SiloAddress target, long position, long bytes, double milliseconds);

    [LoggerMessage(521, LogLevel.Warning, "Could not migrate session {Tenant}/{SessionId} to {Target}: {Reason}")]
    public static partial void MoveFailed(ILogger logger, string tenant, string sessionId, SiloAddress target, string reason);

    [LoggerMessage(522, LogLevel.Information, "Silo {Silo} drained: moved {Moved} sessions to other silos, spilled {Spilled}")]
    public static partial void Drained(ILogger logger, SiloAddress silo, int moved, int spilled);

    [LoggerMessage(523, LogLevel.Information, "Rebalanced {Moved} sessions onto {Silo}, which joined the cluster")]
    public static partial void Rebalanced(ILogger logger, int moved, SiloAddress silo);
}
