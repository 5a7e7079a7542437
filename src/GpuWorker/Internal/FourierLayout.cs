using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Shape of a model's "fourier" caches in its block pool, the per-(layer, side, head) dimension orders and the
/// basis table, built once at load and shared by every fourier cache of the model.
/// </summary>
/// <remarks>
/// <para>A layer l compresses m_l dims of every KV head on both sides and keeps e_l = head_dim − m_l exact (m_l may
/// differ between layers: the paper's calibration compresses the first layers more). A piece is one
/// (layer, side, head), p = (layer·2 + side)·kvHeads + head.</para>
/// <para>A cache's memory is three block tables over the shared pool (block = BlockTokens · full floats per token):
/// token slots (init tokens, then a ring of W window slots) laid out like the full cache; coefficient units of
/// [2k][m_l] floats, one per piece, packed in piece order without straddling a block (<see cref="CoefficientBlockOf"/>,
/// <see cref="CoefficientOffsetOf"/>); and middle tokens, <see cref="MiddleTokensPerBlock"/> to a block, each piece's
/// rows [MiddleTokensPerBlock][e_l] one after another. With one m for every layer this is the layout the codec had
/// before per-layer ratios, byte for byte.</para>
/// <para>Order[p] lists the head's exact dims ascending, then its compressed dims ascending: a middle token stores
/// the first e_l, the coefficients hold the last m_l.</para>
/// </remarks>
internal sealed unsafe class FourierLayout : IDisposable
{
    private readonly int[] _compressed;
    private readonly int[] _coefficientBlock;
    private readonly long[] _coefficientOffset;
    private readonly long[] _coefficientPrefix;
    private readonly long[] _middlePrefix;

    public FourierLayout(ModelConfig c, FourierConfig f, int blockTokens, long blockFloats)
    {
        Config = f;
        Layers = c.NumHiddenLayers;
        KvHeads = c.NumKeyValueHeads;
        HeadDim = c.HeadDim;
        Coefficients = 2 * f.Frequencies;
        Init = f.InitTokens;
        Window = f.Window;
        Horizon = f.Horizon;
        BlockTokens = blockTokens;
        BlockFloats = blockFloats;
        Pieces = Layers * 2 * KvHeads;
        SlotBlocks = (Init + Window + blockTokens - 1) / blockTokens;
        _compressed = Enumerable.Range(0, Layers).Select(f.CompressedDimsOf).ToArray();

        // Per piece: where its coefficient unit lies, and the floats before it in the state and in a middle token.
        _coefficientBlock = new int[Pieces];
        _coefficientOffset = new long[Pieces];
        _coefficientPrefix = new long[Pieces];
        _middlePrefix = new long[Pieces];
        long used = 0;
        int blocks = 0;
        for (int p = 0; p < Pieces; p++)
        {
            int layer = p / (2 * KvHeads);
            long unit = (long)Coefficients * _compressed[layer];
            if (unit > blockFloats)
            {
                throw new ArgumentException(
                    $"Fourier coefficients of one head ({Coefficients} × {_compressed[layer]} floats) exceed a cache block of {blockFloats} floats; use larger blocks or fewer frequencies.");
            }

            if (unit > 0 && (blocks == 0 || used + unit > blockFloats))
            {
                blocks++;
                used = 0;
            }

            _coefficientBlock[p] = Math.Max(0, blocks - 1);
            _coefficientOffset[p] = used;
            used += unit;
            if (p + 1 < Pieces)
            {
                _coefficientPrefix[p + 1] = _coefficientPrefix[p] + unit;
                _middlePrefix[p + 1] = _middlePrefix[p] + HeadDim - _compressed[layer];
            }

            CompressedFloats += unit;
            ExactFloats += HeadDim - _compressed[layer];
        }

        CoefficientBlocks = blocks;
        if (ExactFloats > 0)
        {
            MiddleTokensPerBlock = (int)(blockFloats / ExactFloats);
            int maxMiddle = Math.Max(0, c.MaxPositionEmbeddings - Init - Window);
            MiddleBlocks = (maxMiddle + MiddleTokensPerBlock - 1) / MiddleTokensPerBlock;
        }

        Order = (int*)NativeMemory.Alloc((nuint)((long)Pieces * HeadDim), sizeof(int));
        for (int l = 0; l < Layers; l++)
        {
            for (int side = 0; side < 2; side++)
            {
                for (int h = 0; h < KvHeads; h++)
                {
                    int[] compressed = [.. (side == 0 ? f.KeyDims : f.ValueDims)[l][h].Order()];
                    var order = new Span<int>(OrderOf(l, side, h), HeadDim);
                    int at = 0;
                    for (int d = 0; d < HeadDim; d++)
                    {
                        if (Array.BinarySearch(compressed, d) < 0)
                        {
                            order[at++] = d;
                        }
                    }

                    compressed.CopyTo(order[at..]);
                }
            }
        }

        Basis = (float*)NativeMemory.AlignedAlloc((nuint)((long)Horizon * Coefficients * sizeof(float)), 64);
        for (long u = 0; u < Horizon; u++)
        {
            for (int j = 0; j < Coefficients; j++)
            {
                Basis[u * Coefficients + j] = (float)BasisValue(j, u, Horizon);
            }
        }
    }

    /// <summary>
    /// φ_j(u) of an orthonormal basis over one period T: j = 2i is √(2/T)·cos(2πiu/T) (1/√T for i = 0),
    /// j = 2i + 1 is √(2/T)·sin(2π(i + 1)u/T).
    /// </summary>
    public static double BasisValue(int j, long u, int horizon) => j == 0
        ? 1 / Math.Sqrt(horizon)
        : Math.Sqrt(2.0 / horizon) * (j % 2 == 0 ? Math.Cos(2 * Math.PI * (j / 2) * u / horizon) : Math.Sin(2 * Math.PI * (j / 2 + 1) * u / horizon));

    public FourierConfig Config { get; }

    public int Layers { get; }

    public int KvHeads { get; }

    public int HeadDim { get; }

    /// <summary>Floats of all pieces' coefficient units: 2k · Σ_pieces m_l.</summary>
    public long CompressedFloats { get; }

    /// <summary>Exact floats a middle token keeps over all pieces: Σ_pieces e_l.</summary>
    public long ExactFloats { get; }

    /// <summary>Coefficients per compressed dim (2k).</summary>
    public int Coefficients { get; }

    public int Init { get; }

    public int Window { get; }

    public int Horizon { get; }

    public int BlockTokens { get; }

    public long BlockFloats { get; }

    /// <summary>(layer, side, head) triples: 2 · layers · kvHeads.</summary>
    public int Pieces { get; }

    public int SlotBlocks { get; }

    public int CoefficientBlocks { get; }

    public int MiddleTokensPerBlock { get; }

    public int MiddleBlocks { get; }

    /// <summary>[Horizon][2k] orthonormal basis rows φ(u).</summary>
    public float* Basis { get; }

    public int* Order { get; }

    public int* OrderOf(int layer, int side, int head) => Order + ((long)(layer * 2 + side) * KvHeads + head) * HeadDim;

    /// <summary>Compressed dims of every head and side of <paramref name="layer"/> (m_l).</summary>
    public int CompressedOf(int layer) => _compressed[layer];

    /// <summary>Exact dims a middle token keeps per head and side of <paramref name="layer"/> (e_l = head_dim − m_l).</summary>
    public int ExactOf(int layer) => HeadDim - _compressed[layer];

    /// <summary>The largest m_l: the folded query and output need room for it.</summary>
    public int MaxCompressed => _compressed.Max();

    /// <summary>Coefficient block (index into a cache's coefficient table) of piece <paramref name="piece"/>.</summary>
    public int CoefficientBlockOf(int piece) => _coefficientBlock[piece];

    /// <summary>Float offset of piece <paramref name="piece"/>'s coefficient unit within its block.</summary>
    public long CoefficientOffsetOf(int piece) => _coefficientOffset[piece];

    /// <summary>Floats of the coefficient units before piece <paramref name="piece"/> (the serialized state's order).</summary>
    public long CoefficientPrefixOf(int piece) => _coefficientPrefix[piece];

    /// <summary>Exact floats of one middle token before piece <paramref name="piece"/>.</summary>
    public long MiddlePrefixOf(int piece) => _middlePrefix[piece];

    /// <summary>The piece whose run of a per-piece sequence holds float <paramref name="offset"/>: the last piece starting at or before it.</summary>
    public int PieceAt(bool coefficients, long offset)
    {
        long[] prefix = coefficients ? _coefficientPrefix : _middlePrefix;
        int at = Array.BinarySearch(prefix, offset);
        if (at < 0)
        {
            return ~at - 1;
        }

        // Pieces without floats (m_l = 0 or e_l = 0) share their start with the next: take the last.
        while (at + 1 < prefix.Length && prefix[at + 1] == offset)
        {
            at++;
        }

        return at;
    }

    /// <summary>Middle tokens at <paramref name="position"/> tokens.</summary>
    public int MiddleCount(int position) => Math.Max(0, position - Init - Window);

    /// <summary>
    /// Bytes held at <paramref name="position"/>: 4 · [P · head_dim · min(p, init + W)
    /// + (p &gt; init + W ? Σ_pieces (2k · m_l + (head_dim − m_l) · (p − init − W)) : 0)], P = 2 · layers · kvHeads.
    /// </summary>
    public long BytesAt(int position)
    {
        int middle = MiddleCount(position);
        long floats = (long)Pieces * HeadDim * Math.Min(position, Init + Window)
            + (middle > 0 ? CompressedFloats + ExactFloats * middle : 0);
        return floats * sizeof(float);
    }

    /// <summary>Pool blocks of each table a cache of <paramref name="position"/> tokens holds.</summary>
    public (int Slots, int Coefficients, int Middle) BlocksAt(int position)
    {
        int middle = MiddleCount(position);
        return (
            (Math.Min(position, Init + Window) + BlockTokens - 1) / BlockTokens,
            middle > 0 ? CoefficientBlocks : 0,
            middle > 0 && ExactFloats > 0 ? (middle + MiddleTokensPerBlock - 1) / MiddleTokensPerBlock : 0);
    }

    /// <summary>Token slot of position n: init tokens first, then the window ring.</summary>
    public int SlotOf(int position) => position < Init ? position : Init + (position - Init) % Window;

    public void Dispose()
    {
        NativeMemory.Free(Order);
        NativeMemory.AlignedFree(Basis);
    }
}
