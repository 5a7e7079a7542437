using KvCache.Silo.Hosting;
using KvCache.Silo.Models;
using KvCache.Silo.Sessions;
using KvCache.Silo.Sessions.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;

namespace KvCache.Silo.Placement;

/// <summary>
/// This silo's view of the cluster's load: it publishes its own <see cref="SiloLoad"/> at once when a session
/// activates or leaves here, and at least every <see cref="ClusterOptions.LoadPublishPeriod"/>, and reads every
/// silo's. Placement reads the table afresh (one Redis round trip per new session); a placement made here counts
/// against its silo at once, so a burst of new sessions does not all land on one silo between reads.
/// </summary>
internal sealed class SiloLoads : ILifecycleParticipant<ISiloLifecycle>
{
    private readonly ISiloLoadTable _table;
    private readonly ILocalSiloDetails _local;
    private readonly IClusterMembershipService _membership;
    private readonly ResidentSessions _resident;
    private readonly ModelCatalog _models;
    private readonly ClusterOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<SiloLoads> _logger;
    private readonly Lock _viewLock = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _publishNow = new(0, 1);
    private int _sessions;
    private Dictionary<SiloAddress, SiloLoad> _view = [];
    private Task? _loop;
    private volatile bool _draining;

    public SiloLoads(
        ISiloLoadTable table,
        ILocalSiloDetails local,
        IClusterMembershipService membership,
        ResidentSessions resident,
        ModelCatalog models,
        IOptions<ClusterOptions> options,
        TimeProvider time,
        ILogger<SiloLoads> logger)
    {
        _table = table;
        _local = local;
        _membership = membership;
        _resident = resident;
        _models = models;
        _options = options.Value;
        _time = time;
        _logger = logger;
    }

    public string LocalSiloName => _local.Name;

    public SiloAddress LocalAddress => _local.SiloAddress;

    /// <summary>This silo is moving its sessions off before it stops.</summary>
    public bool IsDraining => _draining;

    /// <summary>This silo's load now.</summary>
    public SiloLoad LocalLoad() => new(
        _local.SiloAddress,
        _local.Name,
        Volatile.Read(ref _sessions),
        _models.All.Sum(m => m.CacheBytesFree),
        _models.All.Sum(m => m.CacheBytesTotal),
        _draining,
        _time.GetUtcNow());

    /// <summary>Marks this silo draining and tells the cluster at once, so no new session is placed here.</summary>
    public async Task BeginDrainAsync()
    {
        _draining = true;
        await PublishAsync(CancellationToken.None);
    }

    /// <summary>A session activated here (counted at once, with or without its cache in memory yet).</summary>
    public void SessionActivated() => SessionsChanged(+1);

    public void SessionDeactivated() => SessionsChanged(-1);

    /// <summary>Reads every silo's load from the table now; on failure the last view stays.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        try
        {
            var loads = await _table.ReadAllAsync(cancellationToken);
            lock (_viewLock)
            {
                _view = loads.ToDictionary(l => l.Address);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            SiloLoadsLog.RefreshFailed(_logger, ex);
        }
    }

    /// <summary>The name of the silo at <paramref name="address"/> (Orleans' parsable address, generation included)
    /// while it is an active member of the cluster; null once it is gone, even if a restarted silo took its name.</summary>
    public string? LiveSiloName(string address) =>
        SiloAddress.TryParse(address, out var silo)
        && _membership.CurrentSnapshot.Members.TryGetValue(silo, out var member)
        && member.Status == SiloStatus.Active
            ? member.Name
            : null;

    /// <summary>
    /// Picks the silo for a new activation among <paramref name="candidates"/> (Orleans' active silos): the one
    /// <paramref name="hint"/> names (see <see cref="SiloNames.Matches"/>) unless it is draining, else the one with the fewest
    /// sessions and then the most free cache memory, never a draining one; and counts the placement against it.
    /// </summary>
    public SiloAddress Place(SiloAddress[] candidates, string? hint)
    {
        lock (_viewLock)
        {
            var chosen = Choose(candidates, _view, hint)
                ?? throw new SiloUnavailableException("No active silo that is not draining can take a new session.");
            if (_view.TryGetValue(chosen, out var load))
            {
                _view[chosen] = load with { ActiveSessions = load.ActiveSessions + 1 };
            }
            else
            {
                _view[chosen] = new SiloLoad(chosen, "", 1, 0, 0, Draining: false, _time.GetUtcNow());
            }

            return chosen;
        }
    }

    /// <summary>
    /// The silo a session migrates to: the one <paramref name="target"/> names (see <see cref="SiloNames.Matches"/>), or the
    /// other active silo with the fewest sessions; never this silo nor a draining one.
    /// </summary>
    /// <exception cref="SessionException">INVALID_ARGUMENT: the named silo is not an active member that can take it;
    /// UNAVAILABLE: no other silo can.</exception>
    public (SiloAddress Address, string Name) ResolveMigrationTarget(string? target)
    {
        var others = _membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active && !m.SiloAddress.Equals(_local.SiloAddress))
            .ToArray();
        Dictionary<SiloAddress, SiloLoad> view;
        lock (_viewLock)
        {
            view = new Dictionary<SiloAddress, SiloLoad>(_view);
        }

        if (!string.IsNullOrEmpty(target))
        {
            var named = others.FirstOrDefault(m => SiloNames.Matches(m.SiloAddress, m.Name, target));
            if (named is null || (view.TryGetValue(named.SiloAddress, out var load) && load.Draining))
            {
                throw new SessionException(SessionErrorCode.InvalidArgument, $"Silo '{SessionInfos.Quote(target)}' is not another active member of the cluster that can take sessions.");
            }

            return (named.SiloAddress, named.Name);
        }

        var chosen = Choose(others.Select(m => m.SiloAddress).ToArray(), view, hint: null)
            ?? throw new SessionException(SessionErrorCode.Unavailable, "No other active silo can take the session.");
        lock (_viewLock)
        {
            if (_view.TryGetValue(chosen, out var load))
            {
                _view[chosen] = load with { ActiveSessions = load.ActiveSessions + 1 };
            }
        }

        return (chosen, others.First(m => m.SiloAddress.Equals(chosen)).Name);
    }

    /// <summary>
    /// The placement rule, on a snapshot of loads: the hinted candidate unless it is draining; else the non-draining
    /// candidate with the fewest sessions, then the most free cache bytes. A silo that has not published yet counts as
    /// empty. Null when every candidate is draining.
    /// </summary>
    internal static SiloAddress? Choose(IReadOnlyList<SiloAddress> candidates, IReadOnlyDictionary<SiloAddress, SiloLoad> loads, string? hint)
    {
        var open = candidates.Where(c => !(loads.TryGetValue(c, out var load) && load.Draining)).ToArray();
        if (hint is not null && open.FirstOrDefault(c => SiloNames.Matches(c, loads.TryGetValue(c, out var load) ? load.Name : null, hint)) is { } hinted)
        {
            return hinted;
        }

        return open
            .OrderBy(c => loads.TryGetValue(c, out var load) ? load.ActiveSessions : 0)
            .ThenByDescending(c => loads.TryGetValue(c, out var load) ? load.CacheBytesFree : long.MaxValue)
            .ThenBy(c => c.ToParsableString(), StringComparer.Ordinal)
            .Cast<SiloAddress?>()
            .FirstOrDefault();
    }

    void ILifecycleParticipant<ISiloLifecycle>.Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(
            nameof(SiloLoads),
            ServiceLifecycleStage.BecomeActive,
            _ =>
            {
                _loop = RunAsync(_stopping.Token);
                return Task.CompletedTask;
            },
            async cancellationToken =>
            {
                await _stopping.CancelAsync();
                if (_loop is not null)
                {
                    await _loop;
                }

                try
                {
                    await _table.RemoveAsync(_local.SiloAddress, cancellationToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // Readers only use loads of active members: a leftover entry is ignored.
                    SiloLoadsLog.RefreshFailed(_logger, ex);
                }
            });

    private void SessionsChanged(int delta)
    {
        Interlocked.Add(ref _sessions, delta);
        if (_publishNow.CurrentCount == 0)
        {
            try
            {
                _publishNow.Release();
            }
            catch (SemaphoreFullException)
            {
                // A publish is signalled already; it will carry this change too.
            }
        }
    }

    private async Task RunAsync(CancellationToken stopping)
    {
        try
        {
            while (!stopping.IsCancellationRequested)
            {
                try
                {
                    await PublishAsync(stopping);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // Placement goes on with the last view; the next round tries again.
                    SiloLoadsLog.RefreshFailed(_logger, ex);
                }

                await RefreshAsync(stopping);
                await _publishNow.WaitAsync(_options.LoadPublishPeriod, stopping);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    private Task PublishAsync(CancellationToken cancellationToken) => _table.PublishAsync(LocalLoad(), cancellationToken);
}

internal static partial class SiloLoadsLog
{
    [LoggerMessage(600, LogLevel.Warning, "Could not publish or read the silos' loads; placement uses the last ones read")]
    public static partial void RefreshFailed(ILogger logger, Exception exception);
}
