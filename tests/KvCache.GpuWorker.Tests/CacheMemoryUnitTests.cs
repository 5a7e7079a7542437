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
    [InlineData("yoco-gret")]
    [InlineData("fusedkv")]
    public void Resident_bytes_are_the_codec_bytes_plus_at_most_five_percent(string kind)
    {
        var (config, codec) = kind switch
        {
            "yoco" => (Plain with { Yoco = new YocoConfig { SlidingWindow = 512 } }, kind),
            "yoco-gret" => (Plain with { Yoco = TestModels.GatedRetention }, YocoKvCache.CodecId),
            "fusedkv" => (Plain with { FusedKv = new FusedKvConfig() }, kind),
            _ => (Plain, kind),
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

    [Theory]
    [InlineData("full", 1)]
    [InlineData("fusedkv", 3)]
    [InlineData("fusedkv-lite", 2)]
    public void A_decode_step_reads_the_bytes_held_times_the_layers_that_share_them(string codec, int factor)
    {
        var config = codec switch
        {
            "fusedkv" => Plain with { FusedKv = new FusedKvConfig() },
            "fusedkv-lite" => Plain with { FusedKv = new FusedKvConfig { Lite = true } },
            _ => Plain,
        };
        using var model = LlamaModel.Load(_models.Generate(config, seed: 62), new ModelLoadOptions { CacheBudgetBytes = 1 << 20, ComputeThreads = 1 });

        // FusedKV holds the lower half's K, V; each upper layer reads two of those layers (Lite: one).
        Assert.Equal(factor * model.CacheBytesAt(codec, 1000), model.CacheBytesReadAt(codec, 1000));
    }

    [Fact]
    public void Every_yoco_cross_decoder_layer_reads_the_global_cache()
    {
        var config = Plain with { Yoco = new YocoConfig { SlidingWindow = 512 } };
        using var model = LlamaModel.Load(_models.Generate(config, seed: 63), new ModelLoadOptions { CacheBudgetBytes = 1 << 20, ComputeThreads = 1 });
        long global = model.CacheBytesAt("yoco", 1001) - model.CacheBytesAt("yoco", 1000);
        int cross = config.NumHiddenLayers - config.NumHiddenLayers / 2;
        Assert.Equal(model.CacheBytesAt("yoco", 1000) + (cross - 1) * 1000 * global, model.CacheBytesReadAt("yoco", 1000));
    }
}
