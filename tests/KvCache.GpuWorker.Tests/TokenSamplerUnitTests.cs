using KvCache.GpuWorker.Sampling;

namespace KvCache.GpuWorker.Tests;

public sealed class TokenSamplerUnitTests
{
    private static readonly float[] Logits = [1f, 3f, 0.5f, 3f, -1f, 2f, 2.5f, 0f];

    [Fact]
    public void Greedy_picks_the_lowest_id_among_ties_with_its_log_softmax()
    {
        var scratch = new float[TokenSampler.ScratchLength(Logits.Length)];
        var chosen = TokenSampler.Sample(Logits, new SamplingOptions(0, 5, 0.5f, 9), 3, scratch);
        Assert.Equal(1, chosen.TokenId);
        double logSumExp = Math.Log(Logits.Sum(x => Math.Exp(x)));
        Assert.Equal(3 - logSumExp, chosen.Logprob, 5);
    }

    [Fact]
    public void Draws_depend_only_on_seed_and_position()
    {
        var scratch = new float[TokenSampler.ScratchLength(Logits.Length)];
        var options = new SamplingOptions(1f, 0, 0, 42);
        int[] first = Enumerable.Range(0, 200).Select(p => TokenSampler.Sample(Logits, options, p, scratch).TokenId).ToArray();
        int[] replay = Enumerable.Range(0, 200).Select(p => TokenSampler.Sample(Logits, options, p, scratch).TokenId).ToArray();
        int[] otherSeed = Enumerable.Range(0, 200).Select(p => TokenSampler.Sample(Logits, options with { Seed = 43 }, p, scratch).TokenId).ToArray();
        Assert.Equal(first, replay);
        Assert.NotEqual(first, otherSeed);
        Assert.True(first.Distinct().Count() >= 5, "temperature 1 over 200 positions should reach most ids");

        var token = TokenSampler.Sample(Logits, options, 17, scratch);
        double logSumExp = Math.Log(Logits.Sum(x => Math.Exp(x)));
        Assert.Equal(Logits[token.TokenId] - logSumExp, token.Logprob, 5);
    }

    [Fact]
    public void Top_k_keeps_the_k_most_likely_ids_breaking_ties_by_id()
    {
        var scratch = new float[TokenSampler.ScratchLength(Logits.Length)];
        var drawn = Enumerable.Range(0, 300).Select(p => TokenSampler.Sample(Logits, new SamplingOptions(5f, 3, 0, 1), p, scratch).TokenId).ToHashSet();
        Assert.Equal([1, 3, 6], drawn.Order());

        // Ids 1 and 3 tie at the top: k = 1 keeps the lower id.
        var one = Enumerable.Range(0, 50).Select(p => TokenSampler.Sample(Logits, new SamplingOptions(5f, 1, 0, 1), p, scratch).TokenId).ToHashSet();
        Assert.Equal([1], one);
    }

    [Fact]
    public void Top_p_keeps_the_smallest_set_reaching_the_mass()
    {
        // Probabilities 0.4, 0.3, 0.2, 0.1: p = 0.5 keeps {0, 1}; p = 0.75 keeps {0, 1, 2}.
        float[] logits = [MathF.Log(0.4f), MathF.Log(0.3f), MathF.Log(0.2f), MathF.Log(0.1f)];
        var scratch = new float[TokenSampler.ScratchLength(logits.Length)];
        HashSet<int> Draw(float p) => Enumerable.Range(0, 300).Select(pos => TokenSampler.Sample(logits, new SamplingOptions(1f, 0, p, 5), pos, scratch).TokenId).ToHashSet();
        Assert.Equal([0, 1], Draw(0.5f).Order());
        Assert.Equal([0, 1, 2], Draw(0.75f).Order());
        Assert.Equal([0], Draw(0.01f).Order());
        Assert.Equal([0, 1, 2, 3], Draw(1f).Order());
    }

    [Fact]
    public void Top_logprobs_are_sorted_most_likely_first()
    {
        var top = new TokenLogprob[4];
        Assert.Equal(4, TokenSampler.TopLogprobs(Logits, top));
        Assert.Equal([1, 3, 6, 5], top.Select(t => t.TokenId));
        double logSumExp = Math.Log(Logits.Sum(x => Math.Exp(x)));
        Assert.Equal(2.5 - logSumExp, top[2].Logprob, 5);
        Assert.Equal(Logits.Length, TokenSampler.TopLogprobs(Logits, new TokenLogprob[20]));
    }

    [Fact]
    public void Sampling_allocates_nothing_and_checks_its_inputs()
    {
        var scratch = new float[TokenSampler.ScratchLength(Logits.Length)];
        var top = new TokenLogprob[3];
        var options = new SamplingOptions(0.8f, 4, 0.9f, 3);
        TokenSampler.Sample(Logits, options, 0, scratch);
        TokenSampler.TopLogprobs(Logits, top);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            TokenSampler.Sample(Logits, options, i, scratch);
            TokenSampler.TopLogprobs(Logits, top);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Throws<ArgumentException>(() => TokenSampler.Sample(Logits, options, 0, new float[3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenSampler.Sample(Logits, options with { Temperature = -1 }, 0, scratch));
        Assert.Throws<ArgumentException>(() => TokenSampler.Sample([1f, float.NaN], options, 0, new float[4]));
    }
}
