using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using KvCache.Silo.Tests.Snapshots;
using Microsoft.Extensions.Options;
using Xunit;

namespace KvCache.Silo.Tests.Storage;

public sealed class RedisSessionStoreIntegrationTests : SessionStoreContract, IClassFixture<SiloRedisFixture>, IAsyncLifetime
{
    private readonly string _prefix = "p" + Guid.NewGuid().ToString("N")[..12];
    private readonly RedisSessionStore _store;
    private readonly RedisClient _raw;

    public RedisSessionStoreIntegrationTests(SiloRedisFixture redis)
    {
        _store = new RedisSessionStore(Options.Create(new RedisStoreOptions { Endpoint = redis.Endpoint, KeyPrefix = _prefix }));
        _raw = new RedisClient(new RedisClientOptions { Endpoint = redis.Endpoint, Connections = 1 });
    }

    protected override ISessionStore Store => _store;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        await _raw.DisposeAsync();
    }

    /// <summary>Each test has its own key prefix, so after a delete no key under it may remain.</summary>
    protected override async Task AssertNothingStoredAsync(SessionKey key)
    {
        var keys = (await _raw.ExecuteAsync(["KEYS", _prefix + ":*"])).AsArray();
        Assert.Empty(keys.Select(k => k.AsString()));
    }

    [Fact]
    public async Task Keys_share_the_sessions_hash_tag()
    {
        var key = await CreateAsync("tagged");
        await Store.AppendTokensAsync(key, 0, new[] { 1 });
        await Store.WriteSnapshotChunkAsync(key, 5, 0, new byte[] { 1 });
        await Store.CommitSnapshotAsync(key, 5, new byte[] { 2 });
        await Store.GetOrAddDecodeRequestAsync(key, "r", 1);
        var keys = (await _raw.ExecuteAsync(["KEYS", _prefix + ":*"])).AsArray().Select(k => k.AsString()!).Order(StringComparer.Ordinal).ToArray();
        string root = $"{_prefix}:{{{key.Tenant}/{key.SessionId}}}:";
        string[] expected = [root + "chunks", root + "meta", root + "reqs", root + "snap", root + "snap:5:0", root + "tokens", $"{_prefix}:tenant:{{{key.Tenant}}}:sessions"];
        Assert.Equal(expected.Order(StringComparer.Ordinal), keys);
        Assert.Equal(-1, (await _raw.ExecuteAsync(["PTTL", root + "snap:5:0"])).AsInt64()); // committed: permanent
    }

    [Fact]
    public async Task Uncommitted_chunks_expire()
    {
        var key = await CreateAsync("ttl");
        await Store.WriteSnapshotChunkAsync(key, 5, 0, new byte[] { 1 });
        long ttl = (await _raw.ExecuteAsync(["PTTL", $"{_prefix}:{{{key.Tenant}/{key.SessionId}}}:snap:5:0"])).AsInt64();
        Assert.InRange(ttl, 1, (long)TimeSpan.FromHours(1).TotalMilliseconds);
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
        await _raw.ExecuteAsync(["DEL", $"{_prefix}:{{{key.Tenant}/{key.SessionId}}}:snap:{snapshot!.SnapshotId}:1"]);
        using var again = new ByteArrayKvCache("full", 300_000);
        var e = await Assert.ThrowsAsync<SnapshotCorruptException>(() => SnapshotReader.RestoreAsync(Store, key, again, "m", "fp", restoredLogits, CancellationToken.None).AsTask());
        Assert.Contains("chunk 1", e.Message);
        Assert.Equal(0, again.Position);
    }
}
