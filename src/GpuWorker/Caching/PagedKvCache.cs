using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.GpuWorker;

/// <summary>
/// A session's cache in blocks of the model's pool: per token and layer, a K-side and a V-side vector for each
/// of <c>heads</c> cache heads of <c>dim</c> elements, f32 or bf16 (<see cref="KvCacheFormat"/>). What those vectors are is the codec's business; see
/// <see cref="FullKvCache"/> and <see cref="SvdGqaKvCache"/> for the two layouts that use it.
/// </summary>
/// <remarks>
/// <para>Memory: the cache holds a block table (sized for max positions when created) and takes pool blocks
/// of <c>BlockTokens</c> tokens as it grows, so appending a token never allocates.</para>
/// <para>Serialized state (token-major, little-endian f32 or bf16 as stored): for each position t in [0, Position), for each
/// layer, the K side then the V side, for each cache head, dim elements. One token is <see cref="BytesPerToken"/>
/// = 2 · layers · heads · dim · element bytes, and the state at a position p is a prefix of the state at any later position.</para>
/// <para>Not thread-safe: one caller at a time (a session's turns are serialized).</para>
/// </remarks>
public sealed unsafe class PagedKvCache : IKvCache, IForwardCache, ICacheState
{
    private readonly KvBlockPool _pool;
    private readonly int _blockTokens;
    private readonly int _kvHeads;
    private readonly int _headDim;
    private readonly int _elementBytes;
    private readonly int _maxBlocks;
    private int* _blocks;
    private int _blockCount;

    internal PagedKvCache(object owner, KvBlockPool pool, string codec, KvLayout layout, int maxPositions, int blockTokens)
    {
        Owner = owner;
        Codec = codec;
        _pool = pool;
        _blockTokens = blockTokens;
        _kvHeads = layout.Heads;
        _headDim = layout.Dim;
        _elementBytes = layout.ElementBytes;
        _maxBlocks = (maxPositions + blockTokens - 1) / blockTokens;
        _blocks = (int*)NativeMemory.Alloc((nuint)_maxBlocks, sizeof(int));
        BytesPerToken = layout.BytesPerToken;
    }

    public string Codec { get; }

    public int Position { get; private set; }

    public long BytesPerToken { get; }

    public long CacheBytes => Position * BytesPerToken;

    public long StateLength => Position * BytesPerToken;

    internal object Owner { get; }

    internal KvView View => new(_pool.Base, _blocks, _blockTokens, _pool.BlockBytes, _kvHeads, _headDim, _elementBytes);

    public void ReadState(long offset, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_blocks == null, this);
        CacheState.Read(this, offset, destination);
    }

    public void BeginRestore(int position)
    {
        ObjectDisposedException.ThrowIf(_blocks == null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, _maxBlocks * _blockTokens);
        EnsureCapacity(position);
        ReleaseBlocksFrom(BlocksFor(position));
        Position = position;
    }

    public void WriteState(long offset, ReadOnlySpan<byte> source)
    {
        ObjectDisposedException.ThrowIf(_blocks == null, this);
        CacheState.Write(this, offset, source);
    }

    public void Dispose()
    {
        if (_blocks == null)
        {
            return;
        }

        _pool.Return(new ReadOnlySpan<int>(_blocks, _blockCount));
        NativeMemory.Free(_blocks);
        _blocks = null;
        _blockCount = 0;
        Position = 0;
    }

    /// <summary>Takes blocks so that <paramref name="tokens"/> positions fit; all or nothing.</summary>
    /// <exception cref="CacheCapacityException">The pool has too few free blocks; nothing changed.</exception>
    internal void EnsureCapacity(int tokens)
    {
        ObjectDisposedException.ThrowIf(_blocks == null, this);
        int needed = BlocksFor(tokens);
        if (needed <= _blockCount)
        {
            return;
        }

        if (needed > _maxBlocks || !_pool.TryTake(new Span<int>(_blocks + _blockCount, needed - _blockCount)))
        {
            throw new CacheCapacityException(
                $"The cache pool has {_pool.FreeBlocks} free blocks of {_blockTokens} tokens; {needed - _blockCount} more are needed for {tokens} tokens.");
        }

        _blockCount = needed;
    }

    object IForwardCache.Owner => Owner;

    void IForwardCache.EnsureCapacity(int tokens) => EnsureCapacity(tokens);

    void IForwardCache.Advance(int tokens) => Position += tokens;

    private int BlocksFor(int tokens) => (tokens + _blockTokens - 1) / _blockTokens;

    private void ReleaseBlocksFrom(int keep)
    {
        if (keep < _blockCount)
        {
            _pool.Return(new ReadOnlySpan<int>(_blocks + keep, _blockCount - keep));
            _blockCount = keep;
        }
    }

    byte* ICacheState.Locate(long offset, out long contiguous)
    {
        // Per token: for each layer, K then V, for each KV head, one head_dim vector.
        long pieceBytes = (long)_headDim * _elementBytes;
        long token = offset / BytesPerToken, inToken = offset % BytesPerToken;
        long piece = inToken / pieceBytes, inPiece = inToken % pieceBytes;
        long layerKind = piece / _kvHeads;
        contiguous = pieceBytes - inPiece;
        byte* slab = View.Slab<byte>((int)(token / _blockTokens), (int)(layerKind / 2), (int)(layerKind % 2), (int)(piece % _kvHeads));
        return slab + token % _blockTokens * pieceBytes + inPiece;
    }
}
