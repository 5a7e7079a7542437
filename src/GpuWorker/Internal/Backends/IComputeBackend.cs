namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>
/// Where a block of one layer's K and V for one KV head lives: block-pool memory is
/// [block][layer][K|V][kvHead][BlockTokens][HeadDim] elements of ElementBytes (4 for f32, 2 for bf16), so one head's
/// keys within a block are contiguous.
/// </summary>
internal readonly unsafe struct KvView(byte* poolBase, int* blockTable, int blockTokens, long blockBytes, int kvHeads, int headDim, int elementBytes)
{
    public readonly byte* PoolBase = poolBase;
    public readonly int* BlockTable = blockTable;
    public readonly int BlockTokens = blockTokens;
    public readonly long BlockBytes = blockBytes;
    public readonly int KvHeads = kvHeads;
    public readonly int HeadDim = headDim;
    public readonly int ElementBytes = elementBytes;

    /// <summary>Whether elements are bf16 (else f32).</summary>
    public bool IsBf16 => ElementBytes == sizeof(ushort);

    /// <summary>
    /// Start of the [BlockTokens, HeadDim] slab for (block, layer, kind 0 = K / 1 = V, kvHead), as a pointer to T; offsets
    /// count ElementBytes per element whatever T is, so T = byte addresses the slab's bytes.
    /// </summary>
    public T* Slab<T>(int blockIndex, int layer, int kind, int kvHead)
        where T : unmanaged =>
        (T*)(PoolBase + BlockTable[blockIndex] * BlockBytes + (((long)layer * 2 + kind) * KvHeads + kvHead) * BlockTokens * HeadDim * ElementBytes);
}

/// <summary>
/// The operations a decoder forward pass needs, on buffers the backend can address (host memory for the CPU
/// backend; a CUDA backend would take device pointers). Every op computes each output element with a
/// reduction order that depends only on the row's own data, so results are batch-invariant.
/// Buffers are row-major; rows are tokens.
/// </summary>
internal unsafe partial interface IComputeBackend : IDisposable
{
    string Name { get; }

    /// <summary>x[i] = table row tokens[i] (table [vocab, dim]).</summary>
    void Embed(float* table, ReadOnlySpan<int> tokens, int dim, float* x);

    /// <summary>y[rows, outDim] = x[rows, inDim] · weightᵀ, weight [outDim, inDim] row-major, accumulated in f32.</summary>
    void MatMul(float* x, int rows, int inDim, in LinearWeight weight, int outDim, float* y);

    /// <summary>y = x / sqrt(mean(x²) + eps) * weight per row.</summary>
    void RmsNorm(float* x, float* weight, float* y, int rows, int dim, float eps);

    /// <summary>Rotate-half rotary embedding in place; tables are [position, headDim / 2].</summary>
    void Rope(float* x, int rows, int heads, int headDim, int startPosition, float* cos, float* sin);

    /// <summary>Stores rows of K and V ([rows, kvHeads * headDim]) at positions startPosition.. of one layer.</summary>
    void StoreKv(in KvView cache, int layer, float* k, float* v, int rows, int startPosition);

    /// <summary>
    /// Causal grouped-query attention of each row over its own cache, which already holds the row's key and value:
    /// row i reads q and writes output at row rows.Rows[i] ([.., heads * HeadDim] each) and attends over positions
    /// [0, rows.Positions[i]] of rows.Views[i], scores scaled by <paramref name="scale"/>.
    /// </summary>
    void Attention(AttentionRows rows, int layer, float* q, int heads, float scale, float* output);

    /// <summary>
    /// Per group, x's slice times the group's basis: y[r, g·outDim + e] = x[r, g·inDim ..] · basis[g·outDim + e, ..]
    /// (x [rows, groups·inDim], basis [groups·outDim, inDim], y [rows, groups·outDim]).
    /// </summary>
    void ProjectGroups(float* x, int rows, int groups, int inDim, float* basis, int outDim, float* y);

    /// <summary>
    /// SVD-GQA query transform q̃_i = Ψ_K,jᵀ q_i: query head i reads KV head j = i / (heads / kvHeads), in group
    /// g = j / groupSize at slot s = j % groupSize; y[r, i·rank + e] = q[r, i] · basis[g·rank + e, s·headDim ..]
    /// (q [rows, heads·headDim], basis [groups·rank, groupSize·headDim], y [rows, heads·rank]).
    /// </summary>
    void ProjectQueries(float* q, int rows, int heads, int headDim, int kvHeads, int groupSize, float* basis, int rank, float* y);

    /// <summary>y = silu(gate) * up.</summary>
    void SiluMul(float* gate, float* up, float* y, long count);

    /// <summary>x += y.</summary>
    void Add(float* x, float* y, long count);
}
