using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Internal;
using KvCache.Silo.Storage.Redis;
using KvCache.Silo.Tests.Snapshots;
using KvCache.Silo.Tests.Storage;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

/// <summary>
/// A stale activation on a real redis-server: activation A (on a silo paused past its death declaration, then
/// resumed) still runs after B took the session over with a newer epoch. Every write A tries is refused by the
/// epoch check in the store's scripts, and nothing of it lands, while B writes on.
/// </summary>
public sealed class ZombieSiloIntegrationTests : IClassFixture<SiloRedisFixture>, IAsyncLifetime
{
    private readonly string _prefix = "z" + Guid.NewGuid().ToString("N")[..12];
    private readonly RedisConnection _connection;
    private readonly RedisSessionStore _store;

    public ZombieSiloIntegrationTests(SiloRedisFixture redis)
    {
        var options = Options.Create(new RedisStoreOptions { Endpoint = redis.Endpoint, KeyPrefix = _prefix });
        _connection = new RedisConnection(options);
        _store = new RedisSessionStore(_connection, options);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _connection.DisposeAsync();

    [Fact]
    public async Task A_zombie_activation_can_write_nothing_once_another_took_its_epoch()
    {
        var key = new SessionKey("acme", "s1");

        // Activation A takes epoch e, creates the session and writes through its fenced view.
        long epochA = await _store.TakeEpochAsync(key);
        Assert.True(await _store.TryCreateAsync(new SessionRecord(key, "m", "full", DateTimeOffset.UtcNow)));
        var a = new FencedSessionStore(_store, key, epochA);
        await a.AppendTokensAsync(key, 0, new[] { 1, 2, 3 });
        await a.SetResidentAsync(key, "silo-a", epochA);
        using var cache = ByteArrayKvCache.Filled("full", bytesPerToken: 100, position: 3, seed: 1);
        await SnapshotWriter.WriteAsync(a, key, cache, "m", "fp", new float[] { 1, 2 }, CancellationToken.None);
        var snapshot = await _store.GetSnapshotAsync(key);
        string[] keysBefore = await ChunkKeysAsync(key);

        // A's silo is declared dead; B activates the session elsewhere and takes epoch e + 1.
        long epochB = await _store.TakeEpochAsync(key);
        Assert.Equal(epochA + 1, epochB);
        var b = new FencedSessionStore(_store, key, epochB);
        await b.SetResidentAsync(key, "silo-b", epochB);

        // A resumes, unaware: every write it tries is refused.
        await Assert.ThrowsAsync<StaleEpochException>(() => a.AppendTokensAsync(key, 3, new[] { 66 }).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => a.WriteSnapshotChunkAsync(key, 42, 0, new byte[] { 6, 6 }).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => a.CommitSnapshotAsync(key, 42, new byte[] { 1 }).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => a.CommitSnapshotAsync(key, snapshot!.SnapshotId, new byte[] { 1 }).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => a.GetOrAddDecodeRequestAsync(key, "late", 3, "f").AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => a.SetResidentAsync(key, "silo-a", epochA).AsTask());
        await Assert.ThrowsAsync<StaleEpochException>(() => a.SetResidentAsync(key, null, epochA).AsTask());
        using var later = ByteArrayKvCache.Filled("full", bytesPerToken: 100, position: 4, seed: 2);
        await Assert.ThrowsAsync<StaleEpochException>(() => SnapshotWriter.WriteAsync(a, key, later, "m", "fp", new float[] { 3 }, CancellationToken.None).AsTask());

        // Nothing of A landed: same tokens, same snapshot and chunks, B still resident, no request recorded.
        Assert.Equal(new SessionState(new SessionRecord(key, "m", "full", (await _store.GetAsync(key))!.CreatedAt), 3, "silo-b"), await _store.GetStateAsync(key));
        var tokens = new int[8];
        Assert.Equal(3, await _store.ReadTokensAsync(key, 0, tokens));
        Assert.Equal([1, 2, 3], tokens[..3]);
        var current = await _store.GetSnapshotAsync(key);
        Assert.Equal(snapshot!.SnapshotId, current!.SnapshotId);
        Assert.Equal(snapshot.Header.ToArray(), current.Header.ToArray());
        Assert.Equal(keysBefore, await ChunkKeysAsync(key));
        using var restored = new ByteArrayKvCache("full", 100);
        Assert.Equal(3, await SnapshotReader.RestoreAsync(_store, key, restored, "m", "fp", new float[2], CancellationToken.None));
        Assert.Equal(cache.State, restored.State);

        // B writes on: its requests, tokens and snapshots go through.
        Assert.Equal(3, (await b.GetOrAddDecodeRequestAsync(key, "late", 3, "f")).Start);
        await b.AppendTokensAsync(key, 3, new[] { 4 });
        await SnapshotWriter.WriteAsync(b, key, later, "m", "fp", new float[] { 3 }, CancellationToken.None);
        Assert.Equal(4, await _store.GetTokenCountAsync(key));
        Assert.NotEqual(snapshot.SnapshotId, (await _store.GetSnapshotAsync(key))!.SnapshotId);
    }

    /// <summary>Every snapshot chunk key stored for the session, committed or not.</summary>
    private async Task<string[]> ChunkKeysAsync(SessionKey key)
    {
        var keys = (string[])(await _connection.Multiplexer.GetDatabase().ExecuteAsync("KEYS", $"{_prefix}:{{{key.Tenant}/{key.SessionId}}}:snap:*"))!;
        return [.. keys.Order(StringComparer.Ordinal)];
    }
}
