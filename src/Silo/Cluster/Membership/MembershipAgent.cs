using KvCache.Silo.Cluster.Membership.Internal;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Cluster.Membership;

/// <summary>
/// This silo's member of the cluster (Orleans' MembershipAgent and oracle, reduced to leases): joins the table,
/// renews its lease every <see cref="MembershipOptions.IAmAlivePeriod"/>, declares silos whose lease lapsed
/// dead, and cancels <see cref="DeclaredDead"/> when it learns that it is dead itself, so the silo stops serving.
/// </summary>
/// <remarks>
/// Being declared dead is final: a silo that comes back (a paused process) must not serve again; its writes are
/// already refused by the directory's epochs, this token stops it from trying.
/// </remarks>
public sealed class MembershipAgent : BackgroundService
{
    private readonly IMembershipTable _table;
    private readonly MembershipOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<MembershipAgent> _logger;
    private readonly CancellationTokenSource _dead = new();
    private readonly DateTimeOffset _startTime;
    private MembershipTableData? _view;
    private DateTimeOffset _leaseRenewed;

    public MembershipAgent(
        IMembershipTable table,
        SiloAddress siloAddress,
        string siloName,
        IOptions<MembershipOptions> options,
        TimeProvider time,
        ILogger<MembershipAgent> logger)
    {
        ArgumentException.ThrowIfNullOrEmpty(siloName);
        _options = options.Value;
        _options.Validate();
        _table = table;
        SiloAddress = siloAddress;
        SiloName = siloName;
        _time = time;
        _logger = logger;
        _startTime = time.GetUtcNow();
        _leaseRenewed = _startTime;
    }

    public SiloAddress SiloAddress { get; }

    public string SiloName { get; }

    /// <summary>Cancelled once this silo is dead: declared so by the cluster, or its lease lapsed unrenewed.</summary>
    public CancellationToken DeclaredDead => _dead.Token;

    /// <summary>A silo's status as of the last table read (<see cref="SiloStatus.None"/> if not in it).</summary>
    public SiloStatus GetApproximateStatus(SiloAddress silo) =>
        _view?.Find(silo) is { } row ? row.Entry.Status : SiloStatus.None;

    /// <summary>Every row as of the last table read (empty before the first).</summary>
    public IReadOnlyList<MembershipEntry> Members => _view?.Members.Select(m => m.Entry).ToArray() ?? [];

    /// <summary>Inserts this silo's row as Joining, then marks it Active.</summary>
    public async Task JoinAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var data = await _table.ReadAllAsync(cancellationToken).ConfigureAwait(false);
            if (data.Find(SiloAddress) is not null)
            {
                break;
            }

            var now = _time.GetUtcNow();
            var entry = new MembershipEntry(SiloAddress, SiloStatus.Joining, SiloName, _startTime, now);
            if (await _table.InsertRowAsync(entry, data.Version.Next(), cancellationToken).ConfigureAwait(false))
            {
                _leaseRenewed = now;
                MembershipLog.StatusChanged(_logger, SiloAddress, SiloStatus.Joining);
                break;
            }
        }

        await SetOwnStatusAsync(SiloStatus.Active, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Marks this silo ShuttingDown: it is no placement target any more but still owns its sessions.</summary>
    public Task ShutDownAsync(CancellationToken cancellationToken) => SetOwnStatusAsync(SiloStatus.ShuttingDown, cancellationToken);

    /// <summary>Leaves on purpose: ShuttingDown, then Dead.</summary>
    public async Task LeaveAsync(CancellationToken cancellationToken)
    {
        await SetOwnStatusAsync(SiloStatus.ShuttingDown, cancellationToken).ConfigureAwait(false);
        await SetOwnStatusAsync(SiloStatus.Dead, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// One round: renew the lease, read the table, stop if this silo is dead, declare lapsed silos dead.
    /// Failures are logged, never thrown: the next round tries again.
    /// </summary>
    public async Task HeartbeatAsync(CancellationToken cancellationToken)
    {
        if (_dead.IsCancellationRequested)
        {
            return;
        }

        var now = _time.GetUtcNow();
        try
        {
            await _table.UpdateIAmAliveAsync(new MembershipEntry(SiloAddress, SiloStatus.Active, SiloName, _startTime, now), cancellationToken).ConfigureAwait(false);
            _leaseRenewed = now;
            var data = await _table.ReadAllAsync(cancellationToken).ConfigureAwait(false);
            _view = data;
            if (data.Find(SiloAddress) is { Entry.Status: SiloStatus.Dead })
            {
                Die("the cluster declared it dead");
                return;
            }

            await DeclareLapsedDeadAsync(data, now, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            MembershipLog.HeartbeatFailed(_logger, ex, SiloAddress);
            if (now - _leaseRenewed > _options.LeaseDuration)
            {
                Die($"it could not renew its lease for {now - _leaseRenewed}");
            }
        }
    }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await JoinAsync(cancellationToken).ConfigureAwait(false);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        if (!_dead.IsCancellationRequested)
        {
            await LeaveAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        _dead.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.IAmAlivePeriod, _time);
        try
        {
            while (!_dead.IsCancellationRequested && await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                await HeartbeatAsync(stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task DeclareLapsedDeadAsync(MembershipTableData data, DateTimeOffset now, CancellationToken cancellationToken)
    {
        while (Lapsed(data, now) is { } row)
        {
            // A lost race means the table changed (often: another silo declared the same one); next round re-reads.
            if (!await _table.UpdateRowAsync(row.Entry with { Status = SiloStatus.Dead }, row.ETag, data.Version.Next(), cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            MembershipLog.DeclaredOtherDead(_logger, row.Entry.SiloAddress, row.Entry.IAmAliveTime, _options.LeaseDuration);
            data = await _table.ReadAllAsync(cancellationToken).ConfigureAwait(false);
            _view = data;
        }
    }

    private (MembershipEntry Entry, string ETag)? Lapsed(MembershipTableData data, DateTimeOffset now)
    {
        foreach (var row in data.Members)
        {
            if (row.Entry.Status != SiloStatus.Dead
                && row.Entry.SiloAddress != SiloAddress
                && now - row.Entry.IAmAliveTime > _options.LeaseDuration)
            {
                return row;
            }
        }

        return null;
    }

    private async Task SetOwnStatusAsync(SiloStatus status, CancellationToken cancellationToken)
    {
        while (true)
        {
            var data = await _table.ReadAllAsync(cancellationToken).ConfigureAwait(false);
            _view = data;
            if (data.Find(SiloAddress) is not { } row || row.Entry.Status == SiloStatus.Dead)
            {
                Die("its row is gone or dead");
                return;
            }

            var now = _time.GetUtcNow();
            if (await _table.UpdateRowAsync(row.Entry with { Status = status, IAmAliveTime = now }, row.ETag, data.Version.Next(), cancellationToken).ConfigureAwait(false))
            {
                _leaseRenewed = now;
                MembershipLog.StatusChanged(_logger, SiloAddress, status);
                if (status == SiloStatus.Dead)
                {
                    // Left on purpose: still no more serving.
                    _dead.Cancel();
                }

                return;
            }
        }
    }

    private void Die(string reason)
    {
        if (!_dead.IsCancellationRequested)
        {
            MembershipLog.SelfDead(_logger, SiloAddress, reason);
            _dead.Cancel();
        }
    }
}
