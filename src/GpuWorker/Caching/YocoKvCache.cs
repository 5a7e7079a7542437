using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;
using KvCache.GpuWorker.Internal.Backends;

namespace KvCache.GpuWorker;

/// <summary>
/// The "yoco" codec of a YOCO model (<see cref="ModelConfig.Yoco"/>): the global K̂, V̂ of every token
/// (num_key_value_heads heads of head_dim elements, f32 or bf16 as <see cref="KvCacheFormat"/> says, growing in pool
/// blocks) plus, per self-decoder layer, a constant-size state: with a sliding-window self-decoder a ring buffer of the
/// last C = sliding_window keys and values, with gated retention a d×d f32 state per head.
/// </summary>
/// <remarks>
/// <para>Bytes at N tokens (H_kv = num_key_value_heads, H = num_attention_heads, d = head_dim, b = 4 for f32 or 2 for
/// bf16, L = layers), the formula of <see cref="BytesAt"/>: 2·N·H_kv·d·b + (N &gt; 0 ? S : 0), with the self-decoder's
/// state S = (L/2)·2·C·H_kv·d·b (rings) or S = (L/2)·H·d·d·4 (retention states, always f32: a recurrent state
/// rounded at every step would drift). The state is taken whole from the pool with the first token, so its term is
/// the full S from N = 1 on, not min(N, C): that is the memory the session holds.</para>
/// <para>Serialized state (little-endian), <see cref="StateLength"/> = <see cref="CacheBytes"/>: first, for each
/// position t in [0, N), K̂ then V̂, each for every KV head d elements (f32 or bf16 as stored); then, for each
/// self-decoder layer, either the K ring then the V ring, for each KV head, C slots of d elements (slot s holds the
/// latest position p &lt; N with p mod C = s; positions follow from N; slots no position reached yet are zero), or
/// for each head its state S[i][j] row by row (i over key, j over value dimensions; f32). A sliding-window model's
/// layout is what it was before gated retention existed; the two never meet, since a snapshot is bound to its model's
/// fingerprint, which hashes config.json.</para>
/// <para>Memory: each layer's state is a fixed number of pool blocks of the global K̂V̂'s shape (⌈C / BlockTokens⌉ per
/// ring; retention rows packed BlockBytes / (4·d) to a block, never straddling one); appending never allocates.
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
    private readonly bool _retention;
    private readonly int _retentionRows;
    private readonly int _rowsPerBlock;
    private readonly int _selfLayers;
    private readonly int _stateBlocks;
    private readonly int _maxBlocks;
    private readonly long _stateBytes;

    // [_maxBlocks global block ids][_selfLayers · _stateBlocks self-decoder state block ids]
    private int* _table;
    private int _globalBlocks;
    private bool _hasState;

    internal YocoKvCache(object owner, KvBlockPool pool, ModelConfig config, KvCacheFormat format, int blockTokens)
    {
        Owner = owner;
        _pool = pool;
        _blockTokens = blockTokens;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        _elementBytes = KvLayout.ElementBytesOf(format);
        _window = config.Yoco!.SlidingWindow;
        _retention = config.Yoco.SelfDecoder == YocoSelfDecoder.GatedRetention;
        _selfLayers = config.NumHiddenLayers / 2;
        _maxBlocks = (config.MaxPositionEmbeddings + blockTokens - 1) / blockTokens;
        BytesPerToken = 2L * _kvHeads * _headDim * _elementBytes;
        _stateBytes = SelfDecoderStateBytes(config, format);
        if (_retention)
        {
            // A block is BlockTokens · 2 · H_kv · d · b bytes, so it holds a whole number of d-float rows.
            _retentionRows = config.NumAttentionHeads * _headDim;
            _rowsPerBlock = (int)(pool.BlockBytes / (_headDim * sizeof(float)));
            _stateBlocks = (_retentionRows + _rowsPerBlock - 1) / _rowsPerBlock;
        }
        else
        {
            _stateBlocks = (_window + blockTokens - 1) / blockTokens;
        }

        _table = (int*)NativeMemory.Alloc((nuint)(_maxBlocks + _selfLayers * _stateBlocks), sizeof(int));
    }

    public string Codec => CodecId;

    public int Position { get; private set; }

    /// <summary>Bytes of global K̂V̂ per token (the self-decoder's state does not grow).</summary>
    public long BytesPerToken { get; }

    public long CacheBytes => Position == 0 ? 0 : Position * BytesPerToken + _stateBytes;

    public long StateLength => CacheBytes;

    internal object Owner { get; }

    internal int Window => _window;

    /// <summary>The global K̂V̂ as a one-layer paged view (position t at block t / BlockTokens).</summary>
    internal KvView Global => new(_pool.Base, _table, _blockTokens, _pool.BlockBytes, _kvHeads, _headDim, _elementBytes);

    /// <summary>Ring of sliding-window self-decoder layer <paramref name="layer"/> as a one-layer view over slots [0, C).</summary>
    internal KvView Ring(int layer) =>
        new(_pool.Base, _table + _maxBlocks + layer * _stateBlocks, _blockTokens, _pool.BlockBytes, _kvHeads, _headDim, _elementBytes);

    /// <summary>The per-head states of gated-retention self-decoder layer <paramref name="layer"/>.</summary>
    internal RetentionState Retention(int layer) =>
        new(_pool.Base, _table + _maxBlocks + layer * _stateBlocks, _pool.BlockBytes, _rowsPerBlock, _headDim);

    /// <summary>Bytes an f32 cache of <paramref name="config"/> holds at <paramref name="position"/> (see remarks).</summary>
    /// <exception cref="ArgumentException">The model is not a YOCO model.</exception>
    public static long BytesAt(ModelConfig config, int position) => BytesAt(config, position, KvCacheFormat.F32);

    /// <summary>Bytes a cache of <paramref name="config"/> in <paramref name="format"/> holds at <paramref name="position"/> (see remarks).</summary>
    /// <exception cref="ArgumentException">The model is not a YOCO model.</exception>
    public static long BytesAt(ModelConfig config, int position, KvCacheFormat format)
    {
        long perToken = 2L * config.NumKeyValueHeads * config.HeadDim * KvLayout.ElementBytesOf(format);
        return position == 0 ? 0 : position * perToken + SelfDecoderStateBytes(config, format);
    }

    /// <summary>The self-decoder's constant state: rings (L/2)·2·C·H_kv·d·b, or retention states (L/2)·H·d·d·4.</summary>
    private static long SelfDecoderStateBytes(ModelConfig config, KvCacheFormat format)
    {
        var yoco = config.Yoco ?? throw new ArgumentException("The model is not a YOCO model.", nameof(config));
        long layers = config.NumHiddenLayers / 2, d = config.HeadDim;
        return yoco.SelfDecoder == YocoSelfDecoder.GatedRetention
            ? layers * config.NumAttentionHeads * d * d * sizeof(float)
            : layers * yoco.SlidingWindow * 2L * config.NumKeyValueHeads * d * KvLayout.ElementBytesOf(format);
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
            ReturnState();
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
        ReturnState();
        NativeMemory.Free(_table);
        _table = null;
        _globalBlocks = 0;
        Position = 0;
    }

    /// <summary>Takes the blocks <paramref name="tokens"/> positions need (the self-decoder's state included); all or nothing.</summary>
    /// <exception cref="CacheCapacityException">The pool has too few free blocks; nothing changed.</exception>
    internal void EnsureCapacity(int tokens)
    {
        ObjectDisposedException.ThrowIf(_table == null, this);
        int needed = BlocksFor(tokens);
        int global = Math.Max(0, needed - _globalBlocks);
        int state = tokens > 0 && !_hasState ? _selfLayers * _stateBlocks : 0;
        if (global + state == 0)
        {
            return;
        }

        if (needed > _maxBlocks || global + state > _pool.FreeBlocks
            || !_pool.TryTake(new Span<int>(_table + _globalBlocks, global)))
        {
            throw Full(global + state, tokens);
        }

        if (state > 0)
        {
            if (!_pool.TryTake(new Span<int>(_table + _maxBlocks, state)))
            {
                _pool.Return(new ReadOnlySpan<int>(_table + _globalBlocks, global));
                throw Full(global + state, tokens);
            }

            // Ring slots no position reached yet serialize as zeros, and a retention state starts at zero,
            // whatever the blocks held before.
            for (int i = 0; i < state; i++)
            {
                _pool.Clear(_table[_maxBlocks + i]);
            }

            _hasState = true;
        }

        _globalBlocks += global;
    }

    object IForwardCache.Owner => Owner;

    void IForwardCache.EnsureCapacity(int tokens) => EnsureCapacity(tokens);

    void IForwardCache.Advance(int tokens) => Position += tokens;

    private CacheCapacityException Full(int blocks, int tokens) => new(
        $"The cache pool has {_pool.FreeBlocks} free blocks of {_blockTokens} tokens; {blocks} more are needed for {tokens} tokens.");

    private int BlocksFor(int tokens) => (tokens + _blockTokens - 1) / _blockTokens;

    private void ReturnState()
    {
        if (_hasState)
        {
            _pool.Return(new ReadOnlySpan<int>(_table + _maxBlocks, _selfLayers * _stateBlocks));
            _hasState = false;
        }
    }

    // The state is a sequence of d-element pieces; each maps to one token's (or ring slot's) vector of one head and
    // side, or to one row of a head's retention state.
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
        else if (_retention)
        {
            long rowBytes = (long)_headDim * sizeof(float);
            long row = (offset - globalBytes) / rowBytes;
            inPiece = (offset - globalBytes) % rowBytes;
            contiguous = rowBytes - inPiece;
            return (byte*)Retention((int)(row / _retentionRows)).Row((int)(row % _retentionRows)) + inPiece;
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
