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
    [InlineData("tiny-fusedkv")]
    [InlineData("tiny-fusedkv-lite")]
    public void Logits_match_pytorch_after_prefill_and_each_greedy_step(string name)
    {
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestModels.FixturesDirectory, name + ".reference.json")));
        var root = fixture.RootElement;
        int[] prompt = root.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] greedy = root.GetProperty("greedy").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        float[][] expected = root.GetProperty("logits").EnumerateArray()
            .Select(row => row.EnumerateArray().Select(e => e.GetSingle()).ToArray()).ToArray();
        int steps = root.GetProperty("steps").GetInt32();
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
}
