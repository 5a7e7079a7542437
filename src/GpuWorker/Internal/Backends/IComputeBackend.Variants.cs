namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>
/// FusedKV's rebuilt K, V of an upper layer: K = A[0] ⊙ K_first + A[1] ⊙ K_last and V = B[0] ⊙ V_first + B[1] ⊙ V_last
/// per KV head and channel (A, B [2, kvHeads · headDim]); Lite (A and B null): K = K_last, V = V_first.
/// </summary>
internal readonly unsafe struct KvFusion(int firstLayer, int lastLayer, float* a, float* b)
{
    public readonly int FirstLayer = firstLayer;
    public readonly int LastLayer = lastLayer;
    public readonly float* A = a;
    public readonly float* B = b;
}

/// <summary>
/// The d×d f32 states of one gated-retention layer, one per head, as rows of d floats in pool blocks: row
/// r = head · d + i (i over key dimensions) lies in block Blocks[r / RowsPerBlock] at row r mod RowsPerBlock.
/// </summary>
internal readonly unsafe struct RetentionState(byte* poolBase, int* blocks, long blockBytes, int rowsPerBlock, int dim)
{
    public readonly int Dim = dim;

    public float* Row(int row) => (float*)(poolBase + blocks[row / rowsPerBlock] * blockBytes) + (long)(row % rowsPerBlock) * Dim;
}

/// <summary>The ops of the YOCO and FusedKV architectures.</summary>
internal unsafe partial interface IComputeBackend
{
    /// <summary>
    /// YOCO self-decoder attention: query row r (position p = startPosition + r) attends to positions
    /// [max(0, p − window + 1), p]; those before startPosition come from the ring (slot = position mod window, one
    /// layer), the others from this call's k, v rows ([rows, kvHeads · headDim], not yet stored). q, output as in
    /// <see cref="Attention"/>. With a bf16 ring, k and v are first rounded in place to the values the ring will hold,
    /// so a chunk attends over its own rows exactly as token-by-token decode would over the ring.
    /// </summary>
    void SlidingAttention(in KvView ring, float* q, float* k, float* v, int rows, int heads, int startPosition, int window, float scale, float* output);

    /// <summary>Stores the rows of k, v at positions startPosition.. into ring slots (position mod window).</summary>
    void StoreRing(in KvView ring, float* k, float* v, int rows, int startPosition, int window);

    /// <summary>
    /// Gated retention for one cache's consecutive rows (positions in order), each head's state advanced row by row:
    /// γ = sigmoid(z)^(1/<paramref name="normalizer"/>) from the decay logit z ([rows, heads]), S = γ S + (k / √d)ᵀ v,
    /// o = q S, then o RMS-normalized (<paramref name="eps"/>, no weight). q, k, v, output [rows, heads · d], RoPE
    /// already applied. Every row's state update and output are computed in one fixed order, the one a single-row call
    /// uses, so any chunking (prefill or token-by-token decode) gives bit-identical states and outputs.
    /// </summary>
    void GatedRetention(in RetentionState state, float* q, float* k, float* v, float* decayLogits, int rows, int heads, float normalizer, float eps, float* output);

    /// <summary>Causal attention like <see cref="Attention"/>, over the keys and values <paramref name="fusion"/> rebuilds from the cache.</summary>
    void FusedAttention(in KvView cache, in KvFusion fusion, float* q, int rows, int heads, int startPosition, float scale, float* output);
}
