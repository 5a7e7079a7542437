using System.Runtime.InteropServices;

using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Activation buffers and row bookkeeping for one forward pass of up to <see cref="Capacity"/> rows, allocated once
/// and reused by every pass.
/// </summary>
internal sealed unsafe class ForwardScratch : IDisposable
{
    private readonly float* _memory;
    private readonly int _vocab;
    private float* _logits;

    public ForwardScratch(ModelConfig c, int chunk)
    {
        Capacity = chunk;
        HiddenSize = c.HiddenSize;
        _vocab = c.VocabSize;
        Tokens = new int[chunk];
        Segments = new PassSegment[chunk];
        Attend = new AttentionRows(chunk);
        long h = (long)chunk * c.HiddenSize, q = (long)chunk * c.QueryDim, kv = (long)chunk * c.KeyValueDim;
        long f = (long)chunk * c.IntermediateSize;

        // A gated-retention self-decoder projects keys and values per query head, plus an output gate and decay logits.
        bool retention = c.Yoco is { SelfDecoder: YocoSelfDecoder.GatedRetention };
        long gate = retention ? q : 0, decay = retention ? (long)chunk * c.NumAttentionHeads : 0;
        kv = retention ? Math.Max(kv, q) : kv;

        // SVD-GQA: queries and attention outputs are rank-wide per head, compressed keys rank-wide per group.
        int rank = c.SvdGqa?.Rank ?? 0;
        long qt = (long)chunk * c.NumAttentionHeads * rank, ck = (long)chunk * c.SvdGqaGroups * rank;
        long attention = Math.Max(q, qt);
        long[] sizes = [h, h, h, q, attention, kv, kv, f, f, qt, ck, gate, decay];
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
        RetentionGate = Next(gate);
        DecayLogits = Next(decay);
    }

    public int Capacity { get; }

    public int HiddenSize { get; }

    /// <summary>Token of each row of the pass.</summary>
    public int[] Tokens { get; }

    /// <summary>The pass's caches, each with its consecutive rows, in row order.</summary>
    public PassSegment[] Segments { get; }

    public int SegmentCount { get; private set; }

    public int Rows { get; private set; }

    /// <summary>The rows that attend over a paged cache (per-codec paths handle the others).</summary>
    public AttentionRows Attend { get; }

    /// <summary>Logits of up to <see cref="Capacity"/> rows [rows, vocab]; allocated by the first batch that needs it.</summary>
    public float* Logits => _logits != null ? _logits
        : _logits = (float*)NativeMemory.AlignedAlloc((nuint)((long)Capacity * _vocab * sizeof(float)), 64);

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

    /// <summary>Gated retention's output-gate projection x W_G [chunk, heads · head_dim] (empty for other models).</summary>
    public float* RetentionGate { get; }

    /// <summary>Gated retention's decay logits x W_γ [chunk, heads] (empty for other models).</summary>
    public float* DecayLogits { get; }

    public void Begin()
    {
        SegmentCount = 0;
        Rows = 0;
        Segments.AsSpan().Clear();
    }

    /// <summary>Adds a cache's tokens as the pass's next rows, at the cache's current position.</summary>
    /// <param name="scored">Every row goes through the LM head (prompt log-probabilities), not only the last.</param>
    public void Add(IForwardCache cache, ReadOnlySpan<int> tokens, bool logits, int item, bool scored = false)
    {
        tokens.CopyTo(Tokens.AsSpan(Rows));
        Segments[SegmentCount++] = new PassSegment(cache, Rows, tokens.Length, cache.Position, logits, item, scored);
        Rows += tokens.Length;
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_memory);
        NativeMemory.AlignedFree(_logits);
    }
}

/// <summary>
/// One cache's rows in a pass: rows [Row, Row + Count) hold its tokens at positions Start.. ; the last row's
/// logits are wanted when <see cref="Logits"/> is set, every row's when <see cref="Scored"/> is.
/// <see cref="Item"/> is the caller's index for the cache.
/// </summary>
internal readonly record struct PassSegment(IForwardCache Cache, int Row, int Count, int Start, bool Logits, int Item, bool Scored)
{
    /// <summary>Rows of this segment that go through the LM head.</summary>
    public int HeadRows => Scored ? Count : Logits ? 1 : 0;
}
