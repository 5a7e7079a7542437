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
        long[] sizes = [h, h, h, q, q, kv, kv, f, f];
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
        Attention = Next(q);
        K = Next(kv);
        V = Next(kv);
        Gate = Next(f);
        Up = Next(f);
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

    public void Dispose() => NativeMemory.AlignedFree(_memory);
}
