using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.GpuWorker;

/// <summary>
/// The "yoco" codec of a YOCO model (<see cref="ModelConfig.Yoco"/>): the global K̂, V̂ of every token
/// (num_key_value_heads heads of head_dim elements, f32 or bf16 as <see cref="KvCacheFormat"/> says, growing in pool
/// blocks) plus, per self-decoder layer, a ring buffer
/// of the last C = sliding_window keys and values (constant size).
/// </summary>
/// <remarks>
/// <para>Bytes at N tokens (H_kv = num_key_value_heads, d = head_dim, b = 4 for f32 or 2 for bf16, L = layers), the formula of
/// <see cref="BytesAt"/>: 2·N·H_kv·d·b + (N &gt; 0 ? (L/2)·2·C·H_kv·d·b : 0). The ring buffers hold the self-decoder's
/// own KV heads (H_kv, not the query heads). They are taken whole from the pool with the first token, so the ring
/// term is the full C from N = 1 on, not min(N, C): that is the memory the session holds.</para>
/// <para>Serialized state (little-endian f32 or bf16 as stored), <see cref="StateLength"/> = <see cref="CacheBytes"/>:
/// first, for each position t in [0, N), K̂ then V̂, each for every KV head d elements; then, for each self-decoder
/// layer, the K ring then the V ring, for each KV head, C slots of d elements. Slot s holds the latest position p &lt; N with
/// p mod C = s (positions follow from N); slots no position reached yet (N &lt; C) are zero.</para>
/// <para>Memory: each ring is ⌈C / BlockTokens⌉ pool blocks of the global K̂V̂'s shape; appending never allocates.
/// Not thread-safe: one caller at a time.</para>
/// </remarks>
public sealed unsafe class YocoKvCache : IKvCache, IForwardCache, ICacheState
{
    public const string CodecId = "yoco";

    private readonly KvBlockPool _pool;
    private readonly int _blockTokens;
    private readonly int _kvHeads;
    private readonly int _headDim;
    private readonly int _elementBytes;
    private readonly int _window;
    private readonly int _selfLayers;
    private readonly int _ringBlocks;
    private readonly int _maxBlocks;
    private readonly long _ringBytes;

    // [_maxBlocks global block ids][_selfLayers · _ringBlocks ring block ids]
    private int* _table;
    private int _globalBlocks;
    private bool _hasRings;

    internal YocoKvCache(object owner, KvBlockPool pool, ModelConfig config, KvCacheFormat format, int blockTokens)
    {
        Owner = owner;
        _pool = pool;
        _blockTokens = blockTokens;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        _elementBytes = KvLayout.ElementBytesOf(format);
        _window = config.Yoco!.SlidingWindow;
        _selfLayers = config.NumHiddenLayers / 2;
        _ringBlocks = (_window + blockTokens - 1) / blockTokens;
        _maxBlocks = (config.MaxPositionEmbeddings + blockTokens - 1) / blockTokens;
        _table = (int*)NativeMemory.Alloc((nuint)(_maxBlocks + _selfLayers * _ringBlocks), sizeof(int));
        BytesPerToken = 2L * _kvHeads * _headDim * _elementBytes;
        _ringBytes = (long)_selfLayers * _window * BytesPerToken;
    }

    public string Codec => CodecId;

    public int Position { get; private set; }

    /// <summary>Bytes of global K̂V̂ per token (the ring buffers do not grow).</summary>
    public long BytesPerToken { get; }

    public long CacheBytes => Position == 0 ? 0 : Position * BytesPerToken + _ringBytes;

    public long StateLength => CacheBytes;

    internal object Owner { get; }

    internal int Window => _window;

    /// <summary>The global K̂V̂ as a one-layer paged view (position t at block t / BlockTokens).</summary>
    internal KvView Global => new(_pool.Base, _table, _blockTokens, _pool.BlockBytes, _kvHeads, _headDim, _elementBytes);

    /// <summary>Ring of self-decoder layer <paramref name="layer"/> as a one-layer view over slots [0, C).</summary>
    internal KvView Ring(int layer) =>
        new(_pool.Base, _table + _maxBlocks + layer * _ringBlocks, _blockTokens, _pool.BlockBytes, _kvHeads, _headDim, _elementBytes);

    /// <summary>Bytes an f32 cache of <paramref name="config"/> holds at <paramref name="position"/> (see remarks).</summary>
    /// <exception cref="ArgumentException">The model is not a YOCO model.</exception>
    public static long BytesAt(ModelConfig config, int position) => BytesAt(config, position, KvCacheFormat.F32);

    /// <summary>Bytes a cache of <paramref name="config"/> in <paramref name="format"/> holds at <paramref name="position"/> (see remarks).</summary>
    /// <exception cref="ArgumentException">The model is not a YOCO model.</exception>
    public static long BytesAt(ModelConfig config, int position, KvCacheFormat format)
    {
        var yoco = config.Yoco ?? throw new ArgumentException("The model is not a YOCO model.", nameof(config));
        long perToken = 2L * config.NumKeyValueHeads * config.HeadDim * KvLayout.ElementBytesOf(format);
        return position == 0 ? 0 : position * perToken + config.NumHiddenLayers / 2 * (long)yoco.SlidingWindow * perToken;
    }

    public void ReadState(long offset, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_table == null, this);
        CacheState.Read(this, offset, destination);
    }

    public void BeginRestore(int position)
    {
        ObjectDisposedException.ThrowIf(_table == null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, _maxBlocks * _blockTokens);
        EnsureCapacity(position);
        int keep = BlocksFor(position);
        if (keep < _globalBlocks)
        {
            _pool.Return(new ReadOnlySpan<int>(_table + keep, _globalBlocks - keep));
            _globalBlocks = keep;
        }

        if (position == 0)
        {
            ReturnRings();
        }

        Position = position;
    }

    public void WriteState(long offset, ReadOnlySpan<byte> source)
    {
        ObjectDisposedException.ThrowIf(_table == null, this);
        CacheState.Write(this, offset, source);
    }

    public void Dispose()
    {
        if (_table == null)
        {
            return;
        }

        _pool.Return(new ReadOnlySpan<int>(_table, _globalBlocks));
        ReturnRings();
        NativeMemory.Free(_table);
        _table = null;
        _globalBlocks = 0;
        Position = 0;
    }

    /// <summary>Takes the blocks <paramref name="tokens"/> positions need (rings included); all or nothing.</summary>
    /// <exception cref="CacheCapacityException">The pool has too few free blocks; nothing changed.</exception>
    internal void EnsureCapacity(int tokens)
    {
        ObjectDisposedException.ThrowIf(_table == null, this);
        int needed = BlocksFor(tokens);
        int global = Math.Max(0, needed - _globalBlocks);
        int rings = tokens > 0 && !_hasRings ? _selfLayers * _ringBlocks : 0;
        if (global + rings == 0)
        {
            return;
        }

        if (needed > _maxBlocks || global + rings > _pool.FreeBlocks
            || !_pool.TryTake(new Span<int>(_table + _globalBlocks, global)))
        {
            throw Full(global + rings, tokens);
        }

        if (rings > 0)
        {
            if (!_pool.TryTake(new Span<int>(_table + _maxBlocks, rings)))
            {
                _pool.Return(new ReadOnlySpan<int>(_table + _globalBlocks, global));
                throw Full(global + rings, tokens);
            }

            // Slots no position reached yet serialize as zeros, whatever the blocks held before.
            for (int i = 0; i < rings; i++)
            {
                _pool.Clear(_table[_maxBlocks + i]);
            }

            _hasRings = true;
        }

        _globalBlocks += global;
    }

    object IForwardCache.Owner => Owner;

    void IForwardCache.EnsureCapacity(int tokens) => EnsureCapacity(tokens);

    void IForwardCache.Advance(int tokens) => Position += tokens;

    private CacheCapacityException Full(int blocks, int tokens) => new(
        $"The cache pool has {_pool.FreeBlocks} free blocks of {_blockTokens} tokens; {blocks} more are needed for {tokens} tokens.");

    private int BlocksFor(int tokens) => (tokens + _blockTokens - 1) / _blockTokens;

    private void ReturnRings()
    {
        if (_hasRings)
        {
            _pool.Return(new ReadOnlySpan<int>(_table + _maxBlocks, _selfLayers * _ringBlocks));
            _hasRings = false;
        }
    }

    // The state is a sequence of d-float pieces; each maps to one token's (or slot's) vector of one head and side.
    byte* ICacheState.Locate(long offset, out long contiguous)
    {
        long pieceBytes = (long)_headDim * _elementBytes;
        long globalBytes = Position * BytesPerToken;
        byte* vector;
        long inPiece;
        if (offset < globalBytes)
        {
            long piece = offset / pieceBytes;
            inPiece = offset % pieceBytes;
            long token = piece / (2 * _kvHeads);
            int side = (int)(piece / _kvHeads % 2), head = (int)(piece % _kvHeads);
            vector = Global.Slab<byte>((int)(token / _blockTokens), 0, side, head) + token % _blockTokens * pieceBytes;
        }
        else
        {
            long piece = (offset - globalBytes) / pieceBytes;
            inPiece = (offset - globalBytes) % pieceBytes;
            int slot = (int)(piece % _window);
            long ring = piece / _window;
            int head = (int)(ring % _kvHeads), side = (int)(ring / _kvHeads % 2), layer = (int)(ring / _kvHeads / 2);
            vector = Ring(layer).Slab<byte>(slot / _blockTokens, 0, side, head) + slot % _blockTokens * pieceBytes;
        }

        contiguous = pieceBytes - inPiece;
        return vector + inPiece;
    }
}
