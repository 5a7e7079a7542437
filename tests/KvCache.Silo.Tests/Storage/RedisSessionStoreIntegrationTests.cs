using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using KvCache.Silo.Tests.Snapshots;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using Xunit;

namespace KvCache.Silo.Tests.Storage;

public sealed class RedisSessionStoreIntegrationTests : SessionStoreContract, IClassFixture<SiloRedisFixture>, IAsyncLifetime
{
    private readonly string _prefix = "p" + Guid.NewGuid().ToString("N")[..12];
    private readonly SiloRedisFixture _redis;
    private readonly RedisConnection _connection;
    private readonly RedisSessionStore _store;

    public RedisSessionStoreIntegrationTests(SiloRedisFixture redis)
    {
        _redis = redis;
        var options = Options.Create(new RedisStoreOptions { Endpoint = redis.Endpoint, KeyPrefix = _prefix });
        _connection = new RedisConnection(options);
        _store = new RedisSessionStore(_connection, options);
    }

    protected override ISessionStore Store => _store;

    private IDatabase Raw => _connection.Multiplexer.GetDatabase();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _connection.DisposeAsync();

    /// <summary>Each test has its own key prefix, so after a delete no key but epoch counters may remain under it.</summary>
    protected override async Task AssertNothingStoredAsync(SessionKey key) =>
        Assert.All(await KeysAsync(), k => Assert.EndsWith("}:epoch", k, StringComparison.Ordinal));

    private async Task<string[]> KeysAsync() =>
        [.. ((string[])(await Raw.ExecuteAsync("KEYS", _prefix + ":*"))!).Order(StringComparer.Ordinal)];

    private string Root(SessionKey key) => $"{_prefix}:{{{key.Tenant}/{key.SessionId}}}:";

    [Fact]
    public async Task Keys_share_the_sessions_hash_tag()
    {
        var key = await CreateAsync("tagged");
        long epoch = await Store.TakeEpochAsync(key);
        await Store.AppendTokensAsync(key, 0, new[] { 1 }, epoch);
        await Store.WriteSnapshotChunkAsync(key, 5, 0, new byte[] { 1 }, epoch);
        await Store.CommitSnapshotAsync(key, 5, new byte[] { 2 }, epoch);
        await Store.GetOrAddDecodeRequestAsync(key, "r", 1, "f", epoch);
        await Store.SetResidentAsync(key, "silo-1", epoch);
        string root = Root(key);
        string[] expected = [root + "chunks", root + "epoch", root + "meta", root + "reqs", root + "snap", root + "snap:5:0", root + "tokens", $"{_prefix}:tenant:{{{key.Tenant}}}:sessions"];
        Assert.Equal(expected.Order(StringComparer.Ordinal), await KeysAsync());
        Assert.Equal(-1, (long)await Raw.ExecuteAsync("PTTL", root + "snap:5:0")); // committed: permanent
        Assert.Equal("silo-1", (string?)await Raw.HashGetAsync(root + "meta", "resident"));
        Assert.Equal(epoch, (long)await Raw.StringGetAsync(root + "epoch"));
    }

    [Fact]
    public async Task Uncommitted_chunks_expire()
    {
        var options = Options.Create(new RedisStoreOptions { Endpoint = _redis.Endpoint, KeyPrefix = _prefix, UncommittedChunkTtl = TimeSpan.FromSeconds(1) });
        var store = new RedisSessionStore(_connection, options);
        var key = await CreateAsync("ttl");
        await store.WriteSnapshotChunkAsync(key, 5, 0, new byte[] { 1 });
        await store.WriteSnapshotChunkAsync(key, 6, 0, new byte[] { 2 });
        await store.CommitSnapshotAsync(key, 6, new byte[] { 3 });
        string uncommitted = Root(key) + "snap:5:0";
        Assert.InRange((long)await Raw.ExecuteAsync("PTTL", uncommitted), -2, 1000);

        // Redis expires it within its TTL and a little more; the committed chunk stays.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (await Raw.KeyExistsAsync(uncommitted) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.False(await Raw.KeyExistsAsync(uncommitted));
        Assert.Equal(1, await store.ReadSnapshotChunkAsync(key, 6, 0, new byte[1]));
    }

    [Fact]
    public async Task The_default_uncommitted_chunk_ttl_is_an_hour()
    {
        var key = await CreateAsync("ttl-default");
        await Store.WriteSnapshotChunkAsync(key, 5, 0, new byte[] { 1 });
        long ttl = (long)await Raw.ExecuteAsync("PTTL", Root(key) + "snap:5:0");
        Assert.InRange(ttl, 1, (long)TimeSpan.FromHours(1).TotalMilliseconds);
    }

    [Fact]
    public async Task A_stale_writers_chunk_does_not_stay_behind()
    {
        var key = await CreateAsync("stale-chunk");
        long old = await Store.TakeEpochAsync(key);
        await Store.TakeEpochAsync(key);
        await Assert.ThrowsAsync<StaleEpochException>(() => Store.WriteSnapshotChunkAsync(key, 9, 0, new byte[100], old).AsTask());
        Assert.False(await Raw.KeyExistsAsync(Root(key) + "snap:9:0"));
        Assert.Empty(await Raw.SetMembersAsync(Root(key) + "chunks"));
    }

    [Fact]
    public async Task Snapshot_round_trips_through_redis_and_a_missing_chunk_is_refused()
    {
        var key = await CreateAsync("spill");
        using var cache = ByteArrayKvCache.Filled("full", bytesPerToken: 300_000, position: 7, seed: 3); // 2.1 MB: 3 chunks
        float[] logits = [.. Enumerable.Range(0, 1000).Select(i => i * 0.5f)];
        var header = await SnapshotWriter.WriteAsync(Store, key, cache, "m", "fp", logits, CancellationToken.None);
        Assert.Equal(3, header.ChunkCount);

        using var restored = new ByteArrayKvCache("full", 300_000);
        var restoredLogits = new float[1000];
        Assert.Equal(7, await SnapshotReader.RestoreAsync(Store, key, restored, "m", "fp", restoredLogits, CancellationToken.None));
        Assert.Equal(cache.State, restored.State);
        Assert.Equal(logits, restoredLogits);

        var snapshot = await Store.GetSnapshotAsync(key);
        await Raw.KeyDeleteAsync($"{Root(key)}snap:{snapshot!.SnapshotId}:1");
        using var again = new ByteArrayKvCache("full", 300_000);
        var e = await Assert.ThrowsAsync<SnapshotCorruptException>(() => SnapshotReader.RestoreAsync(Store, key, again, "m", "fp", restoredLogits, CancellationToken.None).AsTask());
        Assert.Contains("chunk 1", e.Message);
        Assert.Equal(0, again.Position);
    }

    [Fact]
    public async Task Scripts_are_sent_again_after_the_server_forgets_them()
    {
        var key = await CreateAsync("flushed");
        await Store.AppendTokensAsync(key, 0, new[] { 1 });
        await Raw.ExecuteAsync("SCRIPT", "FLUSH");
        await Store.AppendTokensAsync(key, 1, new[] { 2 });
        Assert.Equal(new SessionState(Record(key), 2, null), await Store.GetStateAsync(key));
    }
}
