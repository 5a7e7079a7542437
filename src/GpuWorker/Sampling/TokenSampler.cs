using System.Numerics.Tensors;
using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker.Sampling;

/// <summary>
/// Picks the next token from logits. Random draws depend only on (seed, position), so replaying a session's
/// token log samples the same tokens. Allocates nothing: callers pass scratch of <see cref="ScratchLength"/>.
/// </summary>
public static class TokenSampler
{
    /// <summary>Scratch floats <see cref="Sample"/> needs for a vocabulary of <paramref name="vocabSize"/>.</summary>
    public static int ScratchLength(int vocabSize) => 2 * vocabSize;

    /// <summary>
    /// Temperature 0: argmax (lowest id wins ties). Otherwise softmax(logits / temperature) restricted to the
    /// top-k ids (ties at the cut broken by lower id) and then to the smallest most-likely set whose mass
    /// reaches top-p. The returned logprob is log-softmax of the raw logits at the chosen id.
    /// </summary>
    public static TokenLogprob Sample(ReadOnlySpan<float> logits, in SamplingOptions options, long position, Span<float> scratch)
    {
        int v = logits.Length;
        if (v == 0)
        {
            throw new ArgumentException("Logits are empty.", nameof(logits));
        }

        if (scratch.Length < ScratchLength(v))
        {
            throw new ArgumentException($"Scratch needs {ScratchLength(v)} floats, got {scratch.Length}.", nameof(scratch));
        }

        if (float.IsNaN(options.Temperature) || options.Temperature < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Temperature, "Temperature must be >= 0.");
        }

        float max = TensorPrimitives.Max(logits);
        if (!float.IsFinite(max))
        {
            throw new ArgumentException("Logits contain NaN or infinity.", nameof(logits));
        }

        float logSumExp = LogSumExp(logits, max, scratch[..v]);
        if (options.Temperature == 0)
        {
            int best = logits.IndexOf(max);
            return new TokenLogprob(best, logits[best] - logSumExp);
        }

        var weights = scratch[..v];
        var work = scratch.Slice(v, v);

        // Candidate mask via weights: 0 = excluded; otherwise exp((z - zmax) / T).
        float invT = 1f / options.Temperature;
        for (int i = 0; i < v; i++)
        {
            weights[i] = MathF.Exp((logits[i] - max) * invT);
        }

        int k = options.TopK;
        if (k > 0 && k < v)
        {
            logits.CopyTo(work);
            float kth = KthLargest(work, k);
            int above = 0;
            foreach (float x in logits)
            {
                above += x > kth ? 1 : 0;
            }

            int tiesAllowed = k - above;
            for (int i = 0; i < v; i++)
            {
                if (logits[i] < kth || (logits[i] == kth && tiesAllowed-- <= 0))
                {
                    weights[i] = 0;
                }
            }
        }

        float total = Sum(weights);
        float p = options.TopP;
        if (p > 0 && p < 1)
        {
            // Sort the surviving weights descending and find the weight at which the mass reaches p.
            int m = 0;
            foreach (float w in weights)
            {
                if (w > 0)
                {
                    work[m++] = -w;
                }
            }

            var sorted = work[..m];
            sorted.Sort();
            float target = p * total, cumulative = 0, cutoff = 0;
            foreach (float negative in sorted)
            {
                cumulative += -negative;
                cutoff = -negative;
                if (cumulative >= target)
                {
                    break;
                }
            }

            for (int i = 0; i < v; i++)
            {
                if (weights[i] < cutoff)
                {
                    weights[i] = 0;
                }
            }

            total = Sum(weights);
        }

        var rng = new SplitMix64(SplitMix64.Mix(options.Seed, (ulong)position));
        double u = rng.NextDouble() * total, acc = 0;
        int chosen = -1;
        for (int i = 0; i < v; i++)
        {
            if (weights[i] > 0)
            {
                chosen = i;
                acc += weights[i];
                if (acc > u)
                {
                    break;
                }
            }
        }

        return new TokenLogprob(chosen, logits[chosen] - logSumExp);
    }

    /// <summary>The most likely ids, most likely first (lower id first on ties), with log-softmax values.</summary>
    /// <returns>The number written: min(destination.Length, logits.Length).</returns>
    public static int TopLogprobs(ReadOnlySpan<float> logits, Span<TokenLogprob> destination)
    {
        int count = Math.Min(destination.Length, logits.Length);
        if (count == 0)
        {
            return 0;
        }

        int filled = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float x = logits[i];
            if (filled == count && !(x > destination[count - 1].Logprob))
            {
                continue;
            }

            int at = filled < count ? filled++ : count - 1;
            while (at > 0 && x > destination[at - 1].Logprob)
            {
                destination[at] = destination[at - 1];
                at--;
            }

            destination[at] = new TokenLogprob(i, x);
        }

        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float x in logits)
        {
            sum += Math.Exp(x - max);
        }

        float logSumExp = max + (float)Math.Log(sum);
        for (int i = 0; i < count; i++)
        {
            destination[i] = destination[i] with { Logprob = destination[i].Logprob - logSumExp };
        }

        return count;
    }

    /// <summary>Log-softmax of <paramref name="logits"/> at <paramref name="token"/> (exp summed in double, in chunks
    /// of a stack buffer: no allocation).</summary>
    public static float Logprob(ReadOnlySpan<float> logits, int token)
    {
        float max = TensorPrimitives.Max(logits);
        Span<float> chunk = stackalloc float[1024];
        double sum = 0;
        for (int i = 0; i < logits.Length; i += chunk.Length)
        {
            var part = logits.Slice(i, Math.Min(chunk.Length, logits.Length - i));
            var exp = chunk[..part.Length];
            TensorPrimitives.Subtract(part, max, exp);
            TensorPrimitives.Exp(exp, exp);
            sum += TensorPrimitives.Sum<float>(exp);
        }

        return (float)(logits[token] - max - Math.Log(sum));
    }

    private static float LogSumExp(ReadOnlySpan<float> logits, float max, Span<float> scratch)
    {
        TensorPrimitives.Subtract(logits, max, scratch);
        TensorPrimitives.Exp(scratch, scratch);
        return max + MathF.Log(Sum(scratch));
    }

    private static unsafe float Sum(Span<float> values)
    {
        fixed (float* p = values)
        {
            return Kernels.Sum(p, values.Length);
        }
    }

    /// <summary>Quickselect (deterministic middle pivot) for the k-th largest value; reorders <paramref name="values"/>.</summary>
    private static float KthLargest(Span<float> values, int k)
    {
        int lo = 0, hi = values.Length - 1, target = k - 1;
        while (lo < hi)
        {
            float pivot = values[lo + (hi - lo) / 2];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (values[i] > pivot)
                {
                    i++;
                }

                while (values[j] < pivot)
                {
                    j--;
                }

                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++;
                    j--;
                }
            }

            if (target <= j)
            {
                hi = j;
            }
            else if (target >= i)
            {
                lo = i;
            }
            else
            {
                return values[target];
            }
        }

        return values[target];
    }
}
