using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Internal;
using KvCache.Silo.Storage.Redis;
using KvCache.Silo.Tests.Snapshots;
using KvCache.Silo.Tests.Storage;
using KvCache.Testing.Time;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

/// <summary>
/// A silo paused past its lease, then resumed, on a real redis-server: membership declares it dead, another
/// silo takes its session over, and the zombie's writes are refused by the epoch checked in the store's scripts.
/// </summary>
public sealed class ZombieSiloIntegrationTests : IClassFixture<SiloRedisFixture>, IAsyncLifetime
{
    private static readonly MembershipOptions Leases = new() { IAmAlivePeriod = TimeSpan.FromSeconds(5), LeaseDuration = TimeSpan.FromSeconds(30) };

    private readonly ManualTimeProvider _time = new();
    private readonly RedisSessionStore _store;
    private readonly RedisMembershipTable _table;
    private readonly MembershipAgent _a;
    private readonly MembershipAgent _b;

    public ZombieSiloIntegrationTests(SiloRedisFixture redis)
    {
        string prefix = "z" + Guid.NewGuid().ToString("N")[..12];
        _store = new RedisSessionStore(Options.Create(new RedisStoreOptions { Endpoint = redis.Endpoint, KeyPrefix = prefix }));
        _table = new RedisMembershipTable(Options.Create(new RedisMembershipOptions { Endpoint = redis.Endpoint, KeyPrefix = prefix }));
        _a = Agent("10.0.0.1:11111");
        _b = Agent("10.0.0.2:11111");
    }

    public async Task InitializeAsync()
    {
        await _a.JoinAsync(default);
        await _b.JoinAsync(default);
    }

    public async Task DisposeAsync()
    {
        _a.Dispose();
        _b.Dispose();
        await _store.DisposeAsync();
        await _table.DisposeAsync();
    }

    [Fact]
    public async Task A_zombie_silo_can_neither_append_nor_commit_a_snapshot()
    {
        var key = new SessionKey("acme", "s1");
        Assert.True(await _store.TryCreateAsync(new SessionRecord(key, "m", "full", _time.GetUtcNow())));

        // A owns the session at epoch e: its writes go through.
        var ownerA = await _store.Directory.RegisterAsync(new GrainAddress(key, _a.SiloAddress, ActivationId.NewId()), previous: null);
        var zombie = new FencedSessionStore(_store, key, ownerA.Epoch);
        await zombie.AppendTokensAsync(key, 0, new[] { 1, 2, 3 });
        using var cache = ByteArrayKvCache.Filled("full", bytesPerToken: 100, position: 3, seed: 1);
        await SnapshotWriter.WriteAsync(zombie, key, cache, "m", "fp", new float[] { 1, 2 }, CancellationToken.None);
        var snapshot = await _store.GetSnapshotAsync(key);

        // A pauses past its lease; B declares it dead and takes the session over lazily, at epoch e + 1.
        _time.Advance(Leases.LeaseDuration + TimeSpan.FromSeconds(1));
        await _b.HeartbeatAsync(default);
        var seen = await _store.Directory.LookupAsync(key);
        Assert.Equal(SiloStatus.Dead, _b.GetApproximateStatus(seen!.SiloAddress));
        var ownerB = await _store.Directory.RegisterAsync(new GrainAddress(key, _b.SiloAddress, ActivationId.NewId()), previous: seen);
        Assert.Equal(_b.SiloAddress, ownerB.SiloAddress);
        Assert.Equal(ownerA.Epoch + 1, ownerB.Epoch);

        // A resumes, unaware: every write it tries is refused, and nothing of it lands.
        await Assert.ThrowsAsync<StaleEpochException>(() => zombie.AppendTokensAsync(key, 3, new[] { 66 }).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => zombie.CommitSnapshotAsync(key, 42, new byte[] { 1 }).AsTask());
        using var later = ByteArrayKvCache.Filled("full", bytesPerToken: 100, position: 4, seed: 2);
        await Assert.ThrowsAsync<StaleEpochException>(() => SnapshotWriter.WriteAsync(zombie, key, later, "m", "fp", new float[] { 3 }, CancellationToken.None).AsTask());

        Assert.Equal(3, await _store.GetTokenCountAsync(key));
        var tokens = new int[8];
        Assert.Equal(3, await _store.ReadTokensAsync(key, 0, tokens));
        Assert.Equal(new[] { 1, 2, 3 }, tokens[..3]);
        Assert.Equal(snapshot!.SnapshotId, (await _store.GetSnapshotAsync(key))!.SnapshotId);

        // Its next heartbeat tells A it is dead, so it stops serving; B writes on.
        await _a.HeartbeatAsync(default);
        Assert.True(_a.DeclaredDead.IsCancellationRequested);
        await new FencedSessionStore(_store, key, ownerB.Epoch).AppendTokensAsync(key, 3, new[] { 4 });
        Assert.Equal(4, await _store.GetTokenCountAsync(key));
    }

    private MembershipAgent Agent(string endpoint) =>
        new(_table, new SiloAddress(endpoint, 1), endpoint, Options.Create(Leases), _time, NullLogger<MembershipAgent>.Instance);
}
