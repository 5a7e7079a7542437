using System.Text.Json;
using KvCache.GpuWorker.Sampling;
using Xunit.Abstractions;

namespace KvCache.GpuWorker.Tests;

/// <summary>
/// Logits against the independent float64 PyTorch implementation in Fixtures/llama_reference.py, for plain models
/// (codec "full"), an SVD-GQA conversion below full rank (codec "svd-gqa", the reference's converted-attention mode),
/// and the YOCO, FusedKV and FusedKV-Lite architectures (codecs "yoco", "fusedkv", "fusedkv-lite"; the YOCO prompt
/// is longer than its sliding window, so the rings wrap).
/// </summary>
public sealed class PyTorchReferenceUnitTests(ITestOutputHelper output)
{
    private const float Tolerance = 1e-4f;

    [Theory]
    [InlineData("tiny-f32")]
    [InlineData("tiny-bf16-tied")]
    [InlineData("tiny-f32-svd-gqa-r0.5")]
    [InlineData("tiny-yoco")]
    [InlineData("tiny-yoco-gret")]
    [InlineData("tiny-fusedkv")]
    [InlineData("tiny-fusedkv-lite")]
    public void Logits_match_pytorch_after_prefill_and_each_greedy_step(string name)
    {
        var (prompt, greedy, expected, steps) = ReadFixture(name + ".reference.json");
        Assert.True(prompt.Length >= 64 && steps >= 32 && expected.Length == steps + 1);

        using var model = LlamaModel.Load(Path.Combine(TestModels.FixturesDirectory, name), TestModels.SmallOptions());
        using var cache = model.CreateCache(model.Codecs[0]);
        var logits = new float[model.Config.VocabSize];
        var scratch = new float[TokenSampler.ScratchLength(logits.Length)];
        model.Forward(cache, prompt, logits);
        float worst = 0;
        for (int step = 0; step <= steps; step++)
        {
            float maxAbs = 0;
            for (int i = 0; i < logits.Length; i++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(logits[i] - expected[step][i]));
            }

            Assert.True(maxAbs <= Tolerance, $"{name} step {step}: max abs logit error {maxAbs} > {Tolerance}");
            worst = Math.Max(worst, maxAbs);
            int token = TokenSampler.Sample(logits, new SamplingOptions(0, 0, 0, 0), cache.Position, scratch).TokenId;
            Assert.Equal(greedy[step], token);
            if (step < steps)
            {
                model.Forward(cache, [token], logits);
            }
        }

        output.WriteLine($"{name} ({cache.Codec}): worst max-abs logit error over {steps + 1} positions = {worst:E2}");
    }

    /// <summary>
    /// With bf16 KV caches, against the reference run with --kv-bf16 (every cached key and value rounded to bf16).
    /// The engine rounds its f32 keys and the reference its float64 ones, so an element within f32 noise of a bf16
    /// rounding boundary may round apart by one bf16 step: the tolerance is wider than f32's, yet the test requires the
    /// error to stay a small fraction of the gap to the exact-cache logits (what keeping f32 caches would give).
    /// Teacher-forced on the reference's greedy tokens, so a near tie cannot send the two down different sequences.
    /// </summary>
    [Theory]
    [InlineData("tiny-f32")]
    [InlineData("tiny-f32-svd-gqa-r0.5")]
    [InlineData("tiny-fusedkv")]
    [InlineData("tiny-yoco")]
    [InlineData("tiny-yoco-gret")]
    public void Logits_with_bf16_kv_caches_match_pytorch_rounding_its_cached_keys_and_values(string name)
    {
        const float KvBf16Tolerance = 2e-3f;
        var (prompt, greedy, expected, steps) = ReadFixture(name + ".kv-bf16.reference.json");
        var (_, _, exact, _) = ReadFixture(name + ".reference.json");
        using var model = LlamaModel.Load(Path.Combine(TestModels.FixturesDirectory, name), TestModels.SmallOptions() with { CacheFormat = KvCacheFormat.Bf16 });
        using var cache = model.CreateCache(model.Codecs[0]);
        var logits = new float[model.Config.VocabSize];
        model.Forward(cache, prompt, logits);
        float worst = 0, gap = 0;
        for (int step = 0; step <= steps; step++)
        {
            for (int i = 0; i < logits.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(logits[i] - expected[step][i]));
                gap = Math.Max(gap, Math.Abs(exact[step][i] - expected[step][i]));
            }

            if (step < steps)
            {
                model.Forward(cache, [greedy[step]], logits);
            }
        }

        output.WriteLine($"{name} ({cache.Codec}, bf16 KV): worst max-abs logit error {worst:E2}; bf16 vs exact cache in the reference {gap:E2}");
        Assert.True(worst <= KvBf16Tolerance, $"{name}: max abs logit error {worst} > {KvBf16Tolerance}");
        Assert.True(worst <= gap / 10, $"{name}: error {worst} is not small against the bf16 rounding's own effect {gap}");
    }

    /// <summary>
    /// The engine runs gated retention in its recurrent form (chunked prefill and decode alike); the reference scores
    /// the parallel form and checks, in float64, that the paper's recurrent and chunkwise forms are the same function.
    /// </summary>
    [Fact]
    public void Gated_retention_reference_forms_agree_in_float64()
    {
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestModels.FixturesDirectory, "tiny-yoco-gret.reference.json")));
        foreach (string form in (string[])["recurrent", "chunkwise"])
        {
            double gap = fixture.RootElement.GetProperty($"gret_{form}_vs_parallel_max_abs").GetDouble();
            Assert.True(gap < 1e-10, $"{form} form differs from the parallel form by {gap}");
        }
    }

    private static (int[] Prompt, int[] Greedy, float[][] Logits, int Steps) ReadFixture(string file)
    {
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestModels.FixturesDirectory, file)));
        var root = fixture.RootElement;
        return (
            root.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            root.GetProperty("greedy").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            root.GetProperty("logits").EnumerateArray().Select(row => row.EnumerateArray().Select(e => e.GetSingle()).ToArray()).ToArray(),
            root.GetProperty("steps").GetInt32());
    }
}
