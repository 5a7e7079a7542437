using System.Collections.Concurrent;
using KvCache.Contracts.Internal.V1;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Serving;
using KvCache.Silo.Sessions;
using KvCache.Transport;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Gateway.Routing.Internal;

/// <summary>
/// The gateway's picture of the cluster: membership rows (re-read every <see cref="RoutingOptions.RefreshPeriod"/>
/// and on demand), each live silo's last load report, and activations placed on it since that report.
/// </summary>
internal sealed class ClusterView(
    IMembershipTable table,
    SiloConnections connections,
    IOptions<RoutingOptions> routing,
    IOptions<MembershipOptions> membership,
    TimeProvider time,
    ILogger<ClusterView> logger) : BackgroundService
{
    private readonly ConcurrentDictionary<SiloAddress, SiloStats> _stats = new();
    private readonly ConcurrentDictionary<SiloAddress, int> _placedSinceStats = new();
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private IReadOnlyList<MembershipEntry> _members = [];
    private IReadOnlyList<ModelDescription> _models = [];

    public TimeSpan LeaseDuration => membership.Value.LeaseDuration;

    /// <summary>Models the silos reported serving (empty until one has reported).</summary>
    public IReadOnlyList<ModelDescription> Models => _models;

    /// <summary>Raised with the silos found not live at a refresh, so routes to them are dropped.</summary>
    public event Action<IReadOnlySet<SiloAddress>>? SilosLost;

    /// <summary>Whether the silo may still own activations, by the same lease rule silos apply.</summary>
    public bool IsLive(SiloAddress silo) =>
        _members.FirstOrDefault(m => m.SiloAddress == silo) is { } entry && entry.IsLive(time.GetUtcNow(), LeaseDuration);

    public IReadOnlyList<SiloCandidate> Candidates()
    {
        var now = time.GetUtcNow();
        return _members
            .Where(m => m.IsLive(now, LeaseDuration))
            .Select(m => _stats.TryGetValue(m.SiloAddress, out var s)
                ? new SiloCandidate(m.SiloAddress, m.Status, s.ActiveSessions + _placedSinceStats.GetValueOrDefault(m.SiloAddress), s.CacheBytesFree, s.CacheBytesTotal)
                : new SiloCandidate(m.SiloAddress, m.Status, _placedSinceStats.GetValueOrDefault(m.SiloAddress), 0, 0))
            .ToList();
    }

    /// <summary>Every membership row as of the last refresh, with the silo's last load report if it is live and reported.</summary>
    public IReadOnlyList<(MembershipEntry Entry, SiloStats? Stats)> Members() =>
        _members.Select(m => (m, _stats.GetValueOrDefault(m.SiloAddress))).ToList();

    /// <summary>Counts an activation sent to <paramref name="silo"/> until its next load report includes it.</summary>
    public void NotePlaced(SiloAddress silo) => _placedSinceStats.AddOrUpdate(silo, 1, (_, n) => n + 1);

    /// <summary>Reads membership and the live silos' load now; concurrent callers share one refresh.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        var waited = _refreshing.CurrentCount == 0;
        await _refreshing.WaitAsync(cancellationToken);
        try
        {
            if (waited)
            {
                // Someone refreshed while this caller waited: that view is fresh enough.
                return;
            }

            var data = await table.ReadAllAsync(cancellationToken);
            var now = time.GetUtcNow();
            var members = data.Members.Select(m => m.Entry).ToList();
            var lost = _members.Where(m => !members.Any(n => n.SiloAddress == m.SiloAddress && n.IsLive(now, LeaseDuration)))
                .Select(m => m.SiloAddress)
                .ToHashSet();
            _members = members;
            foreach (var silo in lost)
            {
                _stats.TryRemove(silo, out _);
                _placedSinceStats.TryRemove(silo, out _);
            }

            if (lost.Count > 0)
            {
                RoutingLog.SilosLost(logger, string.Join(", ", lost));
                SilosLost?.Invoke(lost);
            }

            await Task.WhenAll(members.Where(m => m.IsLive(now, LeaseDuration)).Select(m => ReadStatsAsync(m.SiloAddress, cancellationToken)));
        }
        finally
        {
            _refreshing.Release();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(routing.Value.RefreshPeriod, time);
        do
        {
            try
            {
                await RefreshAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                RoutingLog.RefreshFailed(logger, ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    public override void Dispose()
    {
        base.Dispose();
        _refreshing.Dispose();
    }

    private async Task ReadStatsAsync(SiloAddress silo, CancellationToken cancellationToken)
    {
        try
        {
            var stats = await connections.Client(silo).GetStatsAsync(
                new GetStatsRequest(),
                connections.Options(cancellationToken, DateTime.UtcNow + routing.Value.StatsTimeout));
            _stats[silo] = stats;
            _placedSinceStats.TryRemove(silo, out _);
            if (stats.Models.Count > 0)
            {
                _models = stats.Models.Select(SiloProtoMapping.ToModel).ToArray();
            }
        }
        catch (RpcException ex)
        {
            // A silo that cannot report is still placed on by count; its lease decides whether it is gone.
            _stats.TryRemove(silo, out _);
            RoutingLog.StatsFailed(logger, silo, ex.Status.StatusCode);
        }
    }
}
