namespace KvCache.GpuWorker.Tests;

/// <summary>
/// A session's resident cache memory (the pool blocks it holds) against its codec's cache bytes: with the default
/// block size the overhead stays within 5% once a session holds 20 blocks' worth of tokens.
/// </summary>
public sealed class CacheMemoryUnitTests : IDisposable
{
    private static readonly ModelConfig Plain = ModelConfig.Demo with { MaxPositionEmbeddings = 8192 };

    private readonly TempModels _models = new();

    public void Dispose() => _models.Dispose();

    [Theory]
    [InlineData("full")]
    [InlineData("fourier")]
    [InlineData("yoco")]
    [InlineData("fusedkv")]
    public void Resident_bytes_are_the_codec_bytes_plus_at_most_five_percent(string codec)
    {
        var config = codec switch
        {
            "yoco" => Plain with { Yoco = new YocoConfig { SlidingWindow = 512 } },
            "fusedkv" => Plain with { FusedKv = new FusedKvConfig() },
            _ => Plain,
        };
        string directory = _models.Generate(config, seed: 61);
        var options = new ModelLoadOptions { CacheBudgetBytes = 64 << 20, ComputeThreads = 1 };
        using var model = LlamaModel.Load(directory, options);
        int from = 20 * options.BlockTokens;
        foreach (int position in new[] { from, from + 1, from + options.BlockTokens / 2, 3000, 8000 })
        {
            using var cache = model.CreateCache(codec);
            cache.BeginRestore(position);
            long resident = model.CacheBytesTotal - model.CacheBytesFree;
            Assert.Equal(model.CacheBytesAt(codec, position), cache.CacheBytes);
            Assert.True(resident >= cache.CacheBytes, $"{codec} at {position}: {resident} resident bytes hold {cache.CacheBytes} cache bytes?");
            Assert.True(resident <= cache.CacheBytes * 1.05, $"{codec} at {position}: {resident} resident bytes for {cache.CacheBytes} cache bytes (+{(double)resident / cache.CacheBytes - 1:P1})");
        }
    }
}
