using KvCache.Contracts.Snapshots;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using Xunit;

namespace KvCache.Silo.Tests.Snapshots;

public sealed class SnapshotRoundTripUnitTests
{
    private const int BytesPerToken = 1000;
    private const int Vocab = 37;
    private static readonly SnapshotOptions SmallChunks = new() { ChunkSize = 4096, MaxInFlight = 3 };

    private readonly InMemorySessionStore _store = new();
    private readonly SessionKey _key = new("tenant", "session");
    private readonly ByteArrayKvCache _cache = ByteArrayKvCache.Filled("full", BytesPerToken, position: 50, seed: 1);
    private readonly float[] _logits = [.. Enumerable.Range(0, Vocab).Select(i => MathF.Sin(i) * 10)];

    private async Task<SnapshotHeader> SpillAsync()
    {
        await _store.TryCreateAsync(new SessionRecord(_key, "m", "full", DateTimeOffset.UtcNow));
        return await SnapshotWriter.WriteAsync(_store, _key, _cache, "m", "fp", _logits, SmallChunks, CancellationToken.None);
    }

    private Task<int?> RestoreAsync(ByteArrayKvCache fresh, float[] logits, string model = "m", string fingerprint = "fp") =>
        SnapshotReader.RestoreAsync(_store, _key, fresh, model, fingerprint, logits, SmallChunks, CancellationToken.None).AsTask();

    [Fact]
    public async Task Round_trips_over_many_chunks_with_a_partial_last_one()
    {
        var header = await SpillAsync();
        Assert.Equal(("m", "fp", "full", 50), (header.ModelId, header.ModelFingerprint, header.CodecId, header.Position));
        Assert.Equal(50_000, header.StateLength);
        Assert.Equal(Vocab, header.LogitsLength);
        Assert.Equal(13, header.ChunkCount); // 50,148 bytes in 4096-byte chunks
        Assert.Equal(50_148 - 12 * 4096, header.ChunkLength(12));

        var fresh = new ByteArrayKvCache("full", BytesPerToken);
        var logits = new float[Vocab];
        Assert.Equal(50, await RestoreAsync(fresh, logits));
        Assert.Equal(50, fresh.Position);
        Assert.Equal(_cache.State, fresh.State);
        Assert.Equal(_logits, logits);
    }

    [Fact]
    public async Task Default_options_use_one_mebibyte_chunks()
    {
        using var big = ByteArrayKvCache.Filled("full", 100_000, position: 25, seed: 9); // 2.5 MB
        await _store.TryCreateAsync(new SessionRecord(_key, "m", "full", DateTimeOffset.UtcNow));
        var header = await SnapshotWriter.WriteAsync(_store, _key, big, "m", "fp", _logits, CancellationToken.None);
        Assert.Equal((1 << 20, 3), (header.ChunkSize, header.ChunkCount));

        var fresh = new ByteArrayKvCache("full", 100_000);
        var logits = new float[Vocab];
        Assert.Equal(25, await SnapshotReader.RestoreAsync(_store, _key, fresh, "m", "fp", logits, CancellationToken.None));
        Assert.Equal(big.State, fresh.State);
    }

    [Fact]
    public async Task No_snapshot_restores_nothing()
    {
        await _store.TryCreateAsync(new SessionRecord(_key, "m", "full", DateTimeOffset.UtcNow));
        var fresh = new ByteArrayKvCache("full", BytesPerToken);
        Assert.Null(await RestoreAsync(fresh, new float[Vocab]));
        Assert.Equal(0, fresh.Restores);
    }

    [Theory]
    [InlineData("model id", "other", "fp", "full")]
    [InlineData("model fingerprint", "m", "other", "full")]
    [InlineData("codec", "m", "fp", "svd-gqa")]
    public async Task A_snapshot_of_another_model_fingerprint_or_codec_is_refused(string field, string model, string fingerprint, string codec)
    {
        await SpillAsync();
        var fresh = new ByteArrayKvCache(codec, BytesPerToken);
        var e = await Assert.ThrowsAsync<SnapshotMismatchException>(() => RestoreAsync(fresh, new float[Vocab], model, fingerprint));
        Assert.Equal(field, e.Field);
        Assert.Contains(field, e.Message);
        Assert.Contains($"'{e.Expected}'", e.Message);
        Assert.Contains($"'{e.Actual}'", e.Message);
        Assert.NotEqual(e.Expected, e.Actual);
        Assert.Equal(0, fresh.Position);
        Assert.Equal(0, fresh.Restores);
    }

    [Fact]
    public async Task A_snapshot_of_another_shape_is_refused_and_leaves_the_cache_empty()
    {
        await SpillAsync();
        var fresh = new ByteArrayKvCache("full", BytesPerToken + 1);
        var e = await Assert.ThrowsAsync<SnapshotMismatchException>(() => RestoreAsync(fresh, new float[Vocab]));
        Assert.Equal("state length", e.Field);
        Assert.Equal(0, fresh.Position);

        await Assert.ThrowsAsync<SnapshotMismatchException>(() => RestoreAsync(new ByteArrayKvCache("full", BytesPerToken), new float[Vocab + 1]));
    }

    [Fact]
    public async Task A_flipped_byte_fails_the_checksum_and_leaves_the_cache_empty()
    {
        await SpillAsync();
        var snapshot = (await _store.GetSnapshotAsync(_key))!;
        var chunk = new byte[4096];
        int n = await _store.ReadSnapshotChunkAsync(_key, snapshot.SnapshotId, 5, chunk);
        chunk[100] ^= 1;
        await _store.WriteSnapshotChunkAsync(_key, snapshot.SnapshotId, 5, chunk.AsMemory(0, n));

        var fresh = new ByteArrayKvCache("full", BytesPerToken);
        var logits = new float[Vocab];
        var e = await Assert.ThrowsAsync<SnapshotCorruptException>(() => RestoreAsync(fresh, logits));
        Assert.Contains("checksum", e.Message);
        Assert.Equal(0, fresh.Position);
        Assert.Empty(fresh.State);
        Assert.All(logits, l => Assert.Equal(0, l));
    }

    [Fact]
    public async Task A_truncated_chunk_is_refused()
    {
        await SpillAsync();
        var snapshot = (await _store.GetSnapshotAsync(_key))!;
        await _store.WriteSnapshotChunkAsync(_key, snapshot.SnapshotId, 12, new byte[10]);
        var fresh = new ByteArrayKvCache("full", BytesPerToken);
        var e = await Assert.ThrowsAsync<SnapshotCorruptException>(() => RestoreAsync(fresh, new float[Vocab]));
        Assert.Contains("chunk 12", e.Message);
        Assert.Equal(0, fresh.Position);
    }

    [Fact]
    public async Task An_oversized_chunk_is_refused()
    {
        await SpillAsync();
        var snapshot = (await _store.GetSnapshotAsync(_key))!;
        await _store.WriteSnapshotChunkAsync(_key, snapshot.SnapshotId, 12, new byte[4096]);
        var fresh = new ByteArrayKvCache("full", BytesPerToken);
        await Assert.ThrowsAsync<SnapshotCorruptException>(() => RestoreAsync(fresh, new float[Vocab]));
        Assert.Equal(0, fresh.Position);
    }

    [Fact]
    public async Task A_missing_chunk_is_refused()
    {
        var header = await SpillAsync();
        var snapshot = (await _store.GetSnapshotAsync(_key))!;

        // Commit the same header as a new snapshot that lacks its chunk 7.
        var chunk = new byte[4096];
        for (int i = 0; i < header.ChunkCount; i++)
        {
            if (i != 7)
            {
                int n = await _store.ReadSnapshotChunkAsync(_key, snapshot.SnapshotId, i, chunk);
                await _store.WriteSnapshotChunkAsync(_key, snapshot.SnapshotId + 1, i, chunk.AsMemory(0, n));
            }
        }

        await _store.CommitSnapshotAsync(_key, snapshot.SnapshotId + 1, snapshot.Header);
        var fresh = new ByteArrayKvCache("full", BytesPerToken);
        var e = await Assert.ThrowsAsync<SnapshotCorruptException>(() => RestoreAsync(fresh, new float[Vocab]));
        Assert.Contains("chunk 7", e.Message);
        Assert.IsType<SnapshotChunkNotFoundException>(e.InnerException);
        Assert.Equal(0, fresh.Position);
    }

    [Fact]
    public async Task A_garbage_header_is_refused()
    {
        await SpillAsync();
        await _store.CommitSnapshotAsync(_key, 99, new byte[] { 1, 2, 3, 4, 5 });
        var fresh = new ByteArrayKvCache("full", BytesPerToken);
        await Assert.ThrowsAsync<SnapshotCorruptException>(() => RestoreAsync(fresh, new float[Vocab]));
        Assert.Equal(0, fresh.Position);
    }

    [Fact]
    public async Task An_empty_cache_round_trips()
    {
        await _store.TryCreateAsync(new SessionRecord(_key, "m", "full", DateTimeOffset.UtcNow));
        var empty = new ByteArrayKvCache("full", BytesPerToken);
        var header = await SnapshotWriter.WriteAsync(_store, _key, empty, "m", "fp", ReadOnlyMemory<float>.Empty, SmallChunks, CancellationToken.None);
        Assert.Equal(0, header.ChunkCount);
        Assert.Equal(0, await SnapshotReader.RestoreAsync(_store, _key, new ByteArrayKvCache("full", BytesPerToken), "m", "fp", Memory<float>.Empty, SmallChunks, CancellationToken.None));
    }
}
