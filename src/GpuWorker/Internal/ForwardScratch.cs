using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>Activation buffers for one chunk of tokens, allocated once and reused by Forward calls.</summary>
internal sealed unsafe class ForwardScratch : IDisposable
{
    private readonly float* _memory;

    public ForwardScratch(ModelConfig c, int chunk)
    {
        long h = (long)chunk * c.HiddenSize, q = (long)chunk * c.QueryDim, kv = (long)chunk * c.KeyValueDim;
        long f = (long)chunk * c.IntermediateSize;

        // SVD-GQA: queries and attention outputs are rank-wide per head, compressed keys rank-wide per group.
        int rank = c.SvdGqa?.Rank ?? 0;
        long qt = (long)chunk * c.NumAttentionHeads * rank, ck = (long)chunk * c.SvdGqaGroups * rank;
        long attention = Math.Max(q, qt);
        long[] sizes = [h, h, h, q, attention, kv, kv, f, f, qt, ck];
        long total = sizes.Sum(s => (s + 15) & ~15L);
        _memory = (float*)NativeMemory.AlignedAlloc((nuint)(total * sizeof(float)), 64);
        NativeMemory.Clear(_memory, (nuint)(total * sizeof(float)));
        var p = _memory;
        float* Next(long n)
        {
            var r = p;
            p += (n + 15) & ~15L;
            return r;
        }

        X = Next(h);
        Normed = Next(h);
        Projected = Next(h);
        Q = Next(q);
        Attention = Next(attention);
        K = Next(kv);
        V = Next(kv);
        Gate = Next(f);
        Up = Next(f);
        QueryTilde = Next(qt);
        KeyCompressed = Next(ck);
    }

    /// <summary>Residual stream [chunk, hidden].</summary>
    public float* X { get; }

    public float* Normed { get; }

    /// <summary>Output of o_proj / down_proj before the residual add.</summary>
    public float* Projected { get; }

    public float* Q { get; }

    public float* Attention { get; }

    public float* K { get; }

    public float* V { get; }

    public float* Gate { get; }

    public float* Up { get; }

    /// <summary>SVD-GQA queries projected on their group's key basis [chunk, heads · rank].</summary>
    public float* QueryTilde { get; }

    /// <summary>SVD-GQA compressed keys c [chunk, groups · rank].</summary>
    public float* KeyCompressed { get; }

    public void Dispose() => NativeMemory.AlignedFree(_memory);
}
