using System.Runtime.InteropServices;
using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker;

/// <summary>
/// The "fourier" codec of a plain Llama model (FourierAttention, 2025; parameters in <see cref="FourierConfig"/>).
/// Per layer and KV head, the first init tokens and the last W tokens are exact post-RoPE K and V; a token that
/// leaves the window keeps its e_l = head_dim − m_l exact dims and adds its m_l compressed dims (m_l per layer, see
/// <see cref="FourierConfig"/>) into 2k coefficients
/// c_j += x_u φ_j(u) (u = position − init, φ an orthonormal cos/sin basis of period T). Attention folds the query
/// into the coefficients: q · k̂_u = q_E · k_E,u + Σ_j (q_C · c_j) φ_j(u), and Σ_u p_u v̂_u,C = Σ_j c_j Σ_u p_u φ_j(u).
/// </summary>
/// <remarks>
/// <para>Bytes at position p (= <see cref="CacheBytes"/> = <see cref="StateLength"/>), with P = 2 · layers · kvHeads
/// and the sums over layers l: 4 · [P · head_dim · min(p, init + W) + (p &gt; init + W ? 2 · kvHeads · Σ_l (2k · m_l +
/// (head_dim − m_l) · (p − init − W)) : 0)]. With one m for every layer that is
/// 4 · P · [head_dim · min(p, init + W) + (p &gt; init + W ? 2k · m + (head_dim − m) · (p − init − W) : 0)].
/// Up to init + W tokens that is the full cache; each further token costs 4 · 2 · kvHeads · Σ_l (head_dim − m_l)
/// bytes (<see cref="BytesPerToken"/>).</para>
/// <para>Serialized state (little-endian f32): the token slots in slot order (slot s &lt; init holds position s,
/// slot init + i the latest position n with (n − init) mod W = i), each as the full cache's token layout
/// ([layer][K|V][kvHead][head_dim]); then, once the middle is non-empty, the coefficients
/// [layer][K|V][kvHead][2k][m_l]; then each middle token's exact dims [layer][K|V][kvHead][e_l]. Counters follow from
/// the position. With one m for every layer this is the format from before per-layer ratios.</para>
/// <para>Memory comes from the model's shared block pool, block by block as the cache grows.</para>
/// </remarks>
public sealed unsafe class FourierKvCache : IKvCache, IForwardCache, ICacheState
{
    public const string CodecId = "fourier";

    private readonly KvBlockPool _pool;
    private readonly FourierLayout _layout;
    private int* _slotTable;
    private int* _coefficientTable;
    private int* _middleTable;
    private int _slotBlocks;
    private int _coefficientBlocks;
    private int _middleBlocks;

    internal FourierKvCache(object owner, KvBlockPool pool, FourierLayout layout, int maxPositions)
    {
        Owner = owner;
        _pool = pool;
        _layout = layout;
        MaxPositions = maxPositions;
        int tables = layout.SlotBlocks + layout.CoefficientBlocks + layout.MiddleBlocks;
        _slotTable = (int*)NativeMemory.Alloc((nuint)Math.Max(tables, 1), sizeof(int));
        _coefficientTable = _slotTable + layout.SlotBlocks;
        _middleTable = _coefficientTable + layout.CoefficientBlocks;
        BytesPerToken = layout.ExactFloats * sizeof(float);
    }

    public string Codec => CodecId;

    public int Position { get; private set; }

    /// <summary>Bytes per middle token (past init + W): 2 · kvHeads · Σ_l (head_dim − m_l) · 4.</summary>
    public long BytesPerToken { get; }

    public long CacheBytes => _layout.BytesAt(Position);

    public long StateLength => _layout.BytesAt(Position);

    internal object Owner { get; }

    internal FourierLayout Layout => _layout;

    internal int MaxPositions { get; }

    public void ReadState(long offset, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_slotTable == null, this);
        CacheState.Read(this, offset, destination);
    }

    public void BeginRestore(int position)
    {
        ObjectDisposedException.ThrowIf(_slotTable == null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, MaxPositions);
        EnsureCapacity(position);
        var (slots, coefficients, middle) = _layout.BlocksAt(position);
        Release(_slotTable, ref _slotBlocks, slots);
        Release(_coefficientTable, ref _coefficientBlocks, coefficients);
        Release(_middleTable, ref _middleBlocks, middle);
        Position = position;
    }

    public void WriteState(long offset, ReadOnlySpan<byte> source)
    {
        ObjectDisposedException.ThrowIf(_slotTable == null, this);
        CacheState.Write(this, offset, source);
    }

    public void Dispose()
    {
        if (_slotTable == null)
        {
            return;
        }

        Release(_slotTable, ref _slotBlocks, 0);
        Release(_coefficientTable, ref _coefficientBlocks, 0);
        Release(_middleTable, ref _middleBlocks, 0);
        NativeMemory.Free(_slotTable);
        _slotTable = _coefficientTable = _middleTable = null;
        Position = 0;
    }

    /// <summary>Takes the blocks a cache of <paramref name="tokens"/> positions needs; all or nothing.</summary>
    /// <exception cref="CacheCapacityException">The pool has too few free blocks; nothing changed.</exception>
    internal void EnsureCapacity(int tokens)
    {
        ObjectDisposedException.ThrowIf(_slotTable == null, this);
        var (slots, coefficients, middle) = _layout.BlocksAt(tokens);
        int addSlots = Math.Max(0, slots - _slotBlocks);
        int addCoefficients = Math.Max(0, coefficients - _coefficientBlocks);
        int addMiddle = Math.Max(0, middle - _middleBlocks);
        int total = addSlots + addCoefficients + addMiddle;
        if (total == 0)
        {
            return;
        }

        Span<int> taken = total <= 64 ? stackalloc int[total] : new int[total];
        if (!_pool.TryTake(taken))
        {
            throw new CacheCapacityException(
                $"The cache pool has {_pool.FreeBlocks} free blocks; {total} more are needed for {tokens} tokens of the fourier cache.");
        }

        taken[..addSlots].CopyTo(new Span<int>(_slotTable + _slotBlocks, addSlots));
        taken.Slice(addSlots, addCoefficients).CopyTo(new Span<int>(_coefficientTable + _coefficientBlocks, addCoefficients));
        taken[(addSlots + addCoefficients)..].CopyTo(new Span<int>(_middleTable + _middleBlocks, addMiddle));
        for (int i = _coefficientBlocks; i < _coefficientBlocks + addCoefficients; i++)
        {
            // Coefficients are sums: they start from zero (pool blocks come back dirty).
            _pool.Clear(_coefficientTable[i]);
        }

        _slotBlocks += addSlots;
        _coefficientBlocks += addCoefficients;
        _middleBlocks += addMiddle;
    }

    object IForwardCache.Owner => Owner;

    void IForwardCache.EnsureCapacity(int tokens) => EnsureCapacity(tokens);

    void IForwardCache.Advance(int tokens) => Position += tokens;

    /// <summary>
    /// Appends one token's post-RoPE K and V rows ([kvHeads · head_dim]) of one layer at <paramref name="position"/>:
    /// first the token at position − W leaves the window (exact dims to the middle, compressed dims into the
    /// coefficients), then the new token takes its ring slot. Capacity must already be ensured.
    /// </summary>
    internal void Append(int layer, float* k, float* v, int position)
    {
        var f = _layout;
        int d = f.HeadDim, e = f.ExactOf(layer), m = f.CompressedOf(layer), c2 = f.Coefficients;
        int slot = f.SlotOf(position);
        if (position >= f.Init + f.Window)
        {
            int u = position - f.Window - f.Init;
            float* phi = f.Basis + (long)(u % f.Horizon) * c2;
            float* gathered = stackalloc float[Math.Max(m, 1)];
            for (int side = 0; side < 2; side++)
            {
                for (int h = 0; h < f.KvHeads; h++)
                {
                    float* x = Slot(slot, layer, side, h);
                    int* order = f.OrderOf(layer, side, h);
                    if (e > 0)
                    {
                        float* exact = Middle(u, layer, side, h);
                        for (int i = 0; i < e; i++)
                        {
                            exact[i] = x[order[i]];
                        }
                    }

                    if (m > 0)
                    {
                        for (int i = 0; i < m; i++)
                        {
                            gathered[i] = x[order[e + i]];
                        }

                        float* coefficients = Coefficients(layer, side, h);
                        for (int j = 0; j < c2; j++)
                        {
                            Kernels.Axpy(phi[j], gathered, coefficients + (long)j * m, m);
                        }
                    }
                }
            }
        }

        for (int h = 0; h < f.KvHeads; h++)
        {
            new ReadOnlySpan<float>(k + (long)h * d, d).CopyTo(new Span<float>(Slot(slot, layer, 0, h), d));
            new ReadOnlySpan<float>(v + (long)h * d, d).CopyTo(new Span<float>(Slot(slot, layer, 1, h), d));
        }
    }

    /// <summary>The head_dim floats of token slot <paramref name="slot"/> (side 0 = K, 1 = V).</summary>
    internal float* Slot(int slot, int layer, int side, int head) =>
        _pool.Floats(_slotTable[slot / _layout.BlockTokens])
        + (((long)(layer * 2 + side) * _layout.KvHeads + head) * _layout.BlockTokens + slot % _layout.BlockTokens) * _layout.HeadDim;

    /// <summary>The [2k][m_l] coefficients of (layer, side, head).</summary>
    internal float* Coefficients(int layer, int side, int head)
    {
        int piece = (layer * 2 + side) * _layout.KvHeads + head;
        return _pool.Floats(_coefficientTable[_layout.CoefficientBlockOf(piece)]) + _layout.CoefficientOffsetOf(piece);
    }

    /// <summary>The e_l exact floats of middle token u.</summary>
    internal float* Middle(int u, int layer, int side, int head)
    {
        int perBlock = _layout.MiddleTokensPerBlock;
        int piece = (layer * 2 + side) * _layout.KvHeads + head;
        return _pool.Floats(_middleTable[u / perBlock])
            + perBlock * _layout.MiddlePrefixOf(piece) + (long)(u % perBlock) * _layout.ExactOf(layer);
    }

    private void Release(int* table, ref int count, int keep)
    {
        if (keep < count)
        {
            _pool.Return(new ReadOnlySpan<int>(table + keep, count - keep));
            count = keep;
        }
    }

    // Slots (4 + W tokens at most), then the coefficients, then the middle tokens' exact dims (see the class remarks).
    byte* ICacheState.Locate(long offset, out long contiguous)
    {
        var f = _layout;
        long slotPiece = (long)f.HeadDim * sizeof(float);
        long slotBytes = Math.Min(Position, f.Init + f.Window) * f.Pieces * slotPiece;
        long coefficientBytes = f.MiddleCount(Position) > 0 ? f.CompressedFloats * sizeof(float) : 0;
        long middleToken = f.ExactFloats * sizeof(float);
        if (offset < slotBytes)
        {
            long piece = offset / slotPiece;
            int p = (int)(piece % f.Pieces);
            contiguous = slotPiece - offset % slotPiece;
            return (byte*)Slot((int)(piece / f.Pieces), p / (2 * f.KvHeads), p / f.KvHeads % 2, p % f.KvHeads) + offset % slotPiece;
        }

        // Pieces differ in size when m_l varies by layer: find the piece by its start, then the byte within it.
        if (offset < slotBytes + coefficientBytes)
        {
            long o = offset - slotBytes;
            int p = f.PieceAt(coefficients: true, o / sizeof(float));
            int layer = p / (2 * f.KvHeads);
            long within = o - f.CoefficientPrefixOf(p) * sizeof(float);
            contiguous = (long)f.Coefficients * f.CompressedOf(layer) * sizeof(float) - within;
            return (byte*)Coefficients(layer, p / f.KvHeads % 2, p % f.KvHeads) + within;
        }

        long m = offset - slotBytes - coefficientBytes;
        long inToken = m % middleToken;
        int q = f.PieceAt(coefficients: false, inToken / sizeof(float));
        int l = q / (2 * f.KvHeads);
        long inPiece = inToken - f.MiddlePrefixOf(q) * sizeof(float);
        contiguous = (long)f.ExactOf(l) * sizeof(float) - inPiece;
        return (byte*)Middle((int)(m / middleToken), l, q / f.KvHeads % 2, q % f.KvHeads) + inPiece;
    }
}
