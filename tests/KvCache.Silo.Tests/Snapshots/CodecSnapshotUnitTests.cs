using KvCache.GpuWorker;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using Xunit;

namespace KvCache.Silo.Tests.Snapshots;

/// <summary>Real caches of one model: a snapshot taken with one codec is refused by a cache of another.</summary>
public sealed class CodecSnapshotUnitTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("kvcache-codec-snapshot-").FullName;
    private readonly LlamaModel _model;

    public CodecSnapshotUnitTests()
    {
        ModelGenerator.Write(_directory, ModelConfig.Demo, seed: 11);
        _model = LlamaModel.Load(_directory, new ModelLoadOptions { CacheBudgetBytes = 32L << 20 });
    }

    public void Dispose()
    {
        _model.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Theory]
    [InlineData("full", "fourier")]
    [InlineData("fourier", "full")]
    public async Task A_snapshot_is_refused_by_a_cache_of_another_codec_and_restored_by_its_own(string written, string restoredUnder)
    {
        Assert.Contains(written, _model.Codecs);
        Assert.Contains(restoredUnder, _model.Codecs);
        var store = new InMemorySessionStore();
        var key = new SessionKey("acme", "codec-check");
        Assert.True(await store.TryCreateAsync(new SessionRecord(key, _model.Id, written, DateTimeOffset.UnixEpoch)));
        var logits = new float[_model.Config.VocabSize];
        using var source = _model.CreateCache(written);
        _model.Forward(source, Enumerable.Range(0, 40).ToArray(), logits);
        await SnapshotWriter.WriteAsync(store, key, source, _model.Id, _model.Fingerprint, logits, default);

        using var other = _model.CreateCache(restoredUnder);
        var refused = await Assert.ThrowsAsync<SnapshotMismatchException>(() =>
            SnapshotReader.RestoreAsync(store, key, other, _model.Id, _model.Fingerprint, new float[logits.Length], default).AsTask());
        Assert.Equal((written, restoredUnder), (refused.Actual, refused.Expected));
        Assert.Equal(0, other.Position);

        using var same = _model.CreateCache(written);
        var restoredLogits = new float[logits.Length];
        Assert.Equal(40, await SnapshotReader.RestoreAsync(store, key, same, _model.Id, _model.Fingerprint, restoredLogits, default));
        Assert.Equal(logits, restoredLogits);
    }
}
