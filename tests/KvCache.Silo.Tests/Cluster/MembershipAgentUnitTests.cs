using KvCache.Silo.Cluster.Membership;
using KvCache.Testing.Time;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

/// <summary>Leases and death on the in-memory table; the clock moves only when a test advances it.</summary>
public sealed class MembershipAgentUnitTests : IDisposable
{
    private static readonly MembershipOptions Options = new() { IAmAlivePeriod = TimeSpan.FromSeconds(5), LeaseDuration = TimeSpan.FromSeconds(30) };

    private readonly ManualTimeProvider _time = new();
    private readonly InMemoryMembershipTable _table = new();
    private readonly List<MembershipAgent> _agents = [];

    public void Dispose()
    {
        foreach (var agent in _agents)
        {
            agent.Dispose();
        }
    }

    [Fact]
    public async Task Joining_makes_the_silo_active()
    {
        var a = Agent("a:1");
        await a.JoinAsync(default);

        var row = Assert.Single((await _table.ReadAllAsync()).Members);
        Assert.Equal(SiloStatus.Active, row.Entry.Status);
        Assert.Equal("silo-a:1", row.Entry.SiloName);
        Assert.Equal(2, (await _table.ReadAllAsync()).Version.Version); // inserted Joining, then updated
    }

    [Fact]
    public async Task Heartbeats_keep_silos_alive_across_many_leases()
    {
        var a = Agent("a:1");
        var b = Agent("b:1");
        await a.JoinAsync(default);
        await b.JoinAsync(default);

        for (int i = 0; i < 30; i++)
        {
            _time.Advance(Options.IAmAlivePeriod);
            await a.HeartbeatAsync(default);
            await b.HeartbeatAsync(default);
        }

        Assert.Equal(SiloStatus.Active, a.GetApproximateStatus(b.SiloAddress));
        Assert.Equal(SiloStatus.Active, b.GetApproximateStatus(a.SiloAddress));
        Assert.False(a.DeclaredDead.IsCancellationRequested);
        Assert.False(b.DeclaredDead.IsCancellationRequested);
    }

    [Fact]
    public async Task A_silo_whose_lease_lapsed_is_declared_dead_and_learns_it_when_it_resumes()
    {
        var a = Agent("a:1");
        var b = Agent("b:1");
        await a.JoinAsync(default);
        await b.JoinAsync(default);

        // a pauses: b alone heartbeats; exactly at the lease a is still alive, past it a is dead.
        _time.Advance(Options.LeaseDuration);
        await b.HeartbeatAsync(default);
        Assert.Equal(SiloStatus.Active, b.GetApproximateStatus(a.SiloAddress));
        _time.Advance(TimeSpan.FromSeconds(1));
        await b.HeartbeatAsync(default);
        Assert.Equal(SiloStatus.Dead, b.GetApproximateStatus(a.SiloAddress));

        // a resumes: its heartbeat does not revive it; it learns it is dead and stops.
        Assert.False(a.DeclaredDead.IsCancellationRequested);
        await a.HeartbeatAsync(default);
        Assert.True(a.DeclaredDead.IsCancellationRequested);
        var rowA = (await _table.ReadAllAsync()).Find(a.SiloAddress)!.Value;
        Assert.Equal(SiloStatus.Dead, rowA.Entry.Status);
        Assert.Equal(SiloStatus.Active, b.GetApproximateStatus(b.SiloAddress));
    }

    [Fact]
    public async Task A_restarted_silo_is_a_new_member()
    {
        var old = Agent("a:1", generation: 1);
        await old.JoinAsync(default);
        _time.Advance(Options.LeaseDuration + TimeSpan.FromSeconds(1));
        var restarted = Agent("a:1", generation: 2);
        await restarted.JoinAsync(default);
        await restarted.HeartbeatAsync(default);

        Assert.Equal(SiloStatus.Dead, restarted.GetApproximateStatus(old.SiloAddress));
        Assert.Equal(SiloStatus.Active, restarted.GetApproximateStatus(restarted.SiloAddress));
        Assert.False(restarted.DeclaredDead.IsCancellationRequested);
    }

    [Fact]
    public async Task A_silo_that_cannot_renew_its_lease_stops_serving()
    {
        var failing = new FailingTable(_table);
        var a = Agent("a:1", table: failing);
        await a.JoinAsync(default);

        failing.Fail = true;
        _time.Advance(Options.LeaseDuration);
        await a.HeartbeatAsync(default);
        Assert.False(a.DeclaredDead.IsCancellationRequested);
        _time.Advance(TimeSpan.FromSeconds(1));
        await a.HeartbeatAsync(default);
        Assert.True(a.DeclaredDead.IsCancellationRequested);
    }

    [Fact]
    public async Task Leaving_marks_the_silo_dead()
    {
        var a = Agent("a:1");
        await a.JoinAsync(default);
        await a.LeaveAsync(default);

        Assert.Equal(SiloStatus.Dead, Assert.Single((await _table.ReadAllAsync()).Members).Entry.Status);
        Assert.True(a.DeclaredDead.IsCancellationRequested);
    }

    [Theory]
    [InlineData(0, 30)]
    [InlineData(5, 9)]
    public void Options_are_validated(int periodSeconds, int leaseSeconds)
    {
        var options = new MembershipOptions { IAmAlivePeriod = TimeSpan.FromSeconds(periodSeconds), LeaseDuration = TimeSpan.FromSeconds(leaseSeconds) };
        Assert.True(new MembershipOptionsValidator().Validate(null, options).Failed);
        Assert.ThrowsAny<ArgumentException>(() => Agent("a:1", options: options));
        Assert.True(new MembershipOptionsValidator().Validate(null, Options).Succeeded);
    }

    private MembershipAgent Agent(string endpoint, long generation = 1, IMembershipTable? table = null, MembershipOptions? options = null)
    {
        var agent = new MembershipAgent(
            table ?? _table,
            new SiloAddress(endpoint, generation),
            "silo-" + endpoint,
            Microsoft.Extensions.Options.Options.Create(options ?? Options),
            _time,
            NullLogger<MembershipAgent>.Instance);
        _agents.Add(agent);
        return agent;
    }

    /// <summary>A table whose heartbeats and reads fail while <see cref="Fail"/> is set (Redis unreachable).</summary>
    private sealed class FailingTable(IMembershipTable inner) : IMembershipTable
    {
        public bool Fail { get; set; }

        public ValueTask<MembershipTableData> ReadAllAsync(CancellationToken cancellationToken = default) =>
            Fail ? throw new IOException("unreachable") : inner.ReadAllAsync(cancellationToken);

        public ValueTask<bool> InsertRowAsync(MembershipEntry entry, TableVersion tableVersion, CancellationToken cancellationToken = default) =>
            inner.InsertRowAsync(entry, tableVersion, cancellationToken);

        public ValueTask<bool> UpdateRowAsync(MembershipEntry entry, string etag, TableVersion tableVersion, CancellationToken cancellationToken = default) =>
            inner.UpdateRowAsync(entry, etag, tableVersion, cancellationToken);

        public ValueTask UpdateIAmAliveAsync(MembershipEntry entry, CancellationToken cancellationToken = default) =>
            Fail ? throw new IOException("unreachable") : inner.UpdateIAmAliveAsync(entry, cancellationToken);
    }
}
