using KvCache.GpuWorker.Batching;
using KvCache.GpuWorker.Sampling;

namespace KvCache.GpuWorker.Tests;

/// <summary>Prompt log-probabilities (Append's prompt_logprobs) from a scored prefill, against one token at a time.</summary>
public sealed class PromptScoringUnitTests : IDisposable
{
    private static readonly ModelConfig Config = ModelConfig.Demo with { MaxPositionEmbeddings = 512 };

    private readonly TempModel _directory = TestModels.Generate(Config, seed: 23);
    private readonly LlamaModel _model;

    public PromptScoringUnitTests() => _model = LlamaModel.Load(_directory.Directory, TestModels.SmallOptions(budget: 16 << 20));

    public void Dispose()
    {
        _model.Dispose();
        _directory.Dispose();
    }

    [Theory]
    [InlineData("full", 150)]
    [InlineData("fourier", 70)]
    public async Task Scores_over_several_passes_equal_the_log_softmax_of_each_position_alone(string codec, int length)
    {
        using var scheduler = new BatchScheduler(_model, new BatchSchedulerOptions());
        var tokens = TestModels.Tokens(length, Config.VocabSize, 5);
        var cache = _model.CreateCache(codec);
        var logits = new float[Config.VocabSize];
        var scores = new float[length - 1];
        await scheduler.ForwardAsync(new ForwardRequest(), cache, tokens, logits, scores);

        // A pass is batch-invariant: the logits of each position equal those of a one-token forward, bit for bit.
        var alone = _model.CreateCache(codec);
        var step = new float[Config.VocabSize];
        for (int i = 0; i < length; i++)
        {
            _model.Forward(alone, tokens.AsSpan(i, 1), step);
            if (i + 1 < length)
            {
                Assert.Equal(TokenSampler.Logprob(step, tokens[i + 1]), scores[i]);
            }
        }

        Assert.Equal(step, logits);
        Assert.All(scores, s => Assert.True(s < 0 && float.IsFinite(s)));
        cache.Dispose();
        alone.Dispose();
    }

    [Fact]
    public void Logprob_is_the_log_softmax()
    {
        float[] logits = [1f, 2f, 3f, -1f];
        double sum = logits.Sum(x => Math.Exp(x));
        Assert.Equal(Math.Log(Math.Exp(3) / sum), TokenSampler.Logprob(logits, 2), 5);
        var large = Enumerable.Range(0, 3000).Select(i => (float)Math.Sin(i)).ToArray();
        Assert.Equal(large[7] - Math.Log(large.Sum(x => Math.Exp(x))), TokenSampler.Logprob(large, 7), 4);
    }
}
