using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;
using Xunit.Abstractions;

namespace KvCache.GpuWorker.Tests;

/// <summary>KV caches kept in bf16 (<see cref="KvCacheFormat.Bf16"/>) against f32 caches of the same model.</summary>
public sealed class KvCacheFormatUnitTests(ITestOutputHelper output) : IDisposable
{
    private static readonly ModelConfig Plain = ModelConfig.Demo with { MaxPositionEmbeddings = 256 };

    private readonly TempModels _models = new();

    public void Dispose() => _models.Dispose();

    [Theory]
    [InlineData("full")]
    [InlineData("fusedkv")]
    [InlineData("yoco")]
    public void A_bf16_cache_holds_half_the_bytes_stores_the_rounded_f32_values_and_decodes_close_to_f32(string kind)
    {
        string directory = Generate(kind);
        using var f32 = LlamaModel.Load(directory, TestModels.SmallOptions());
        using var bf16 = LlamaModel.Load(directory, TestModels.SmallOptions() with { CacheFormat = KvCacheFormat.Bf16 });
        string codec = bf16.Codecs[0];
        Assert.Equal([codec], bf16.Codecs);
        Assert.Equal(KvCacheFormat.Bf16, bf16.CacheFormat);
        Assert.NotEqual(f32.Fingerprint, bf16.Fingerprint);
        Assert.Equal(f32.CacheBytesAt(codec, 100), 2 * bf16.CacheBytesAt(codec, 100));

        // Teacher-forced, so both caches see the same tokens: a 40-token prompt in two chunks, then 8 single tokens.
        int vocab = Plain.VocabSize;
        int[] tokens = TestModels.Tokens(48, vocab, 8);
        using var wide = f32.CreateCache(codec);
        using var narrow = bf16.CreateCache(codec);
        float worst = 0, scale = 0;
        bool anyDifferent = false;
        var expected = new float[vocab];
        var actual = new float[vocab];
        foreach (var (start, count) in (ReadOnlySpan<(int, int)>)[(0, 25), (25, 15), (40, 1), (41, 1), (42, 1), (43, 1), (44, 1), (45, 1), (46, 1), (47, 1)])
        {
            f32.Forward(wide, tokens.AsSpan(start, count), expected);
            bf16.Forward(narrow, tokens.AsSpan(start, count), actual);
            anyDifferent |= !expected.AsSpan().SequenceEqual(actual);
            for (int v = 0; v < vocab; v++)
            {
                worst = Math.Max(worst, Math.Abs(expected[v] - actual[v]));
                scale = Math.Max(scale, Math.Abs(expected[v]));
            }
        }

        output.WriteLine($"{kind}: bf16 vs f32 cache: max |Δlogit| {worst:G4}, max |logit| {scale:G4}");
        Assert.True(anyDifferent, "bf16 rounding changed no logit: was the cache kept in f32?");
        Assert.True(worst <= 0.02f * scale, $"max |Δlogit| {worst} for logits up to {scale}");

        // Layer 0's keys and values depend on no cached value, so the bf16 cache must hold exactly their rounding:
        // each token's first layer in a paged state, the first ring (the state's first C slots after the global K̂V̂) in YOCO's.
        Assert.Equal(narrow.CacheBytes, narrow.StateLength);
        Assert.Equal(wide.StateLength, 2 * narrow.StateLength);
        var stored = MemoryMarshal.Cast<byte, float>(CodecChecks.ReadState(wide).AsSpan());
        var rounded = MemoryMarshal.Cast<byte, ushort>(CodecChecks.ReadState(narrow).AsSpan());
        int vector = 2 * Plain.NumKeyValueHeads * Plain.HeadDim;
        var (first, length, stride) = kind == "yoco"
            ? (tokens.Length * vector, 16 * vector, 0)
            : (0, vector, (int)(narrow.BytesPerToken / sizeof(ushort)));
        for (int t = 0; t < (kind == "yoco" ? 1 : tokens.Length); t++)
        {
            for (int e = first + t * stride; e < first + t * stride + length; e++)
            {
                Assert.Equal(Bf16.FromSingle(stored[e]), rounded[e]);
            }
        }
    }

    [Theory]
    [InlineData("full")]
    [InlineData("fusedkv")]
    [InlineData("yoco")]
    [InlineData("yoco-gret")]
    public void A_bf16_cache_passes_the_codec_checks(string kind)
    {
        using var model = LlamaModel.Load(Generate(kind), TestModels.SmallOptions() with { CacheFormat = KvCacheFormat.Bf16 });
        string codec = model.Codecs[0];
        int vocab = model.Config.VocabSize;
        CodecChecks.AssertAnyChunkingIsBitIdentical(model, codec, TestModels.Tokens(70, vocab, 3), [[70], [1, 33, 1, 35], [17, 53]]);
        CodecChecks.AssertSnapshotRoundTrip(model, codec, TestModels.Tokens(90, vocab, 4), 61);
        CodecChecks.AssertDecodeStepAllocatesNothing(model, codec);
    }

    [Fact]
    public void A_fourier_calibrated_model_refuses_bf16_caches_at_load_and_a_plain_model_drops_fourier()
    {
        var bf16 = TestModels.SmallOptions() with { CacheFormat = KvCacheFormat.Bf16 };
        string plain = Generate("full");
        using (var model = LlamaModel.Load(plain, bf16))
        {
            Assert.Equal([FullKvCache.CodecId], model.Codecs);
            Assert.Throws<ArgumentException>(() => model.CreateCache(FourierKvCache.CodecId));
        }

        FourierConfig.Default(Plain, dimsFraction: 0.5, window: 16, frequencies: 4).Write(plain);
        using (var calibrated = LlamaModel.Load(plain, TestModels.SmallOptions()))
        {
            Assert.Contains(FourierKvCache.CodecId, calibrated.Codecs);
        }

        var refused = Assert.Throws<ArgumentException>(() => LlamaModel.Load(plain, bf16));
        Assert.Contains("fourier", refused.Message, StringComparison.Ordinal);
        Assert.Contains("CacheFormat", refused.Message, StringComparison.Ordinal);
    }

    // YOCO's window (16) is shorter than the 48-token sequences, so its rings wrap.
    private string Generate(string kind) => _models.Generate(
        kind switch
        {
            "fusedkv" => Plain with { FusedKv = new FusedKvConfig() },
            "yoco" => Plain with { Yoco = new YocoConfig { SlidingWindow = 16 } },
            "yoco-gret" => Plain with { Yoco = TestModels.GatedRetention },
            _ => Plain,
        },
        seed: 23);
}
