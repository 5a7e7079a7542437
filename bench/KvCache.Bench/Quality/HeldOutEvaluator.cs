using KvCache.GpuWorker;

namespace KvCache.Bench.Quality;

/// <summary>What one codec predicted over the held-out windows of one context length.</summary>
/// <param name="Nll">Summed negative log-likelihood (nats) of every scored next token.</param>
/// <param name="Scored">Next tokens scored: windows × (context − 1).</param>
/// <param name="Top1">Argmax of the logits at every scored position, window after window.</param>
/// <param name="BytesPerToken">The cache's bytes over its position at the end of a window (the engine's own count).</param>
internal sealed record HeldOutResult(double Nll, long Scored, int[] Top1, double BytesPerToken)
{
    public double Perplexity => Math.Exp(Nll / Scored);

    /// <summary>Share of positions whose top-1 token equals <paramref name="baseline"/>'s.</summary>
    public double AgreementWith(HeldOutResult baseline) =>
        (double)Top1.Zip(baseline.Top1).Count(p => p.First == p.Second) / Top1.Length;
}

/// <summary>
/// Scores held-out text with a fresh cache per window, feeding one token at a time: the engine returns the last
/// position's logits, and per-token feeding is bit-identical to prefill (its batch invariance), so every position
/// is scored exactly as a decode step would see it.
/// </summary>
internal static class HeldOutEvaluator
{
    public static HeldOutResult Run(LlamaModel model, string codec, IReadOnlyList<int[]> windows)
    {
        var logits = new float[model.Config.VocabSize];
        var top1 = new List<int>();
        double nll = 0, bytesPerToken = 0;
        foreach (int[] window in windows)
        {
            using var cache = model.CreateCache(codec);
            for (int t = 0; t < window.Length; t++)
            {
                model.Forward(cache, window.AsSpan(t, 1), logits);
                if (t + 1 < window.Length)
                {
                    nll -= LogSoftmax(logits, window[t + 1]);
                    top1.Add(ArgMax(logits));
                }
            }

            bytesPerToken = (double)cache.CacheBytes / cache.Position;
        }

        return new HeldOutResult(nll, top1.Count, top1.ToArray(), bytesPerToken);
    }

    /// <summary>Largest engine-vs-reference logit difference over the last rows of reference.json.</summary>
    public static double MaxReferenceError(LlamaModel model, string codec, int[] ids, double[][] expected)
    {
        var logits = new float[model.Config.VocabSize];
        using var cache = model.CreateCache(codec);
        int first = ids.Length - expected.Length;
        model.Forward(cache, ids.AsSpan(0, first + 1), logits);
        double max = 0;
        for (int row = 0; row < expected.Length; row++)
        {
            if (row > 0)
            {
                model.Forward(cache, ids.AsSpan(first + row, 1), logits);
            }

            for (int v = 0; v < logits.Length; v++)
            {
                max = Math.Max(max, Math.Abs(logits[v] - expected[row][v]));
            }
        }

        return max;
    }

    private static double LogSoftmax(float[] logits, int target)
    {
        double max = logits.Max(), sum = 0;
        foreach (float l in logits)
        {
            sum += Math.Exp(l - max);
        }

        return logits[target] - max - Math.Log(sum);
    }

    private static int ArgMax(float[] logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            best = logits[i] > logits[best] ? i : best;
        }

        return best;
    }
}
