using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Shape of a model's "fourier" caches in its block pool, the per-(layer, side, head) dimension orders and the
/// basis table, built once at load and shared by every fourier cache of the model.
/// </summary>
/// <remarks>
/// <para>A cache's memory is three block tables over the shared pool (block = BlockTokens · full floats per token):
/// token slots (init tokens, then a ring of W window slots) laid out like the full cache; coefficient units of
/// [2k][m] floats, one per (layer, side, head), <see cref="CoefficientUnitsPerBlock"/> to a block; and middle
/// tokens whose e = head_dim − m exact dims sit as [layer][side][head][MiddleTokensPerBlock][e] per block.</para>
/// <para>Order[(layer·2 + side)·kvHeads + head] lists the head's exact dims ascending, then its compressed dims
/// ascending: a middle token stores the first e, the coefficients hold the last m.</para>
/// </remarks>
internal sealed unsafe class FourierLayout : IDisposable
{
    public FourierLayout(ModelConfig c, FourierConfig f, int blockTokens, long blockFloats)
    {
        Config = f;
        Layers = c.NumHiddenLayers;
        KvHeads = c.NumKeyValueHeads;
        HeadDim = c.HeadDim;
        Compressed = f.CompressedDims;
        Exact = HeadDim - Compressed;
        Coefficients = 2 * f.Frequencies;
        Init = f.InitTokens;
        Window = f.Window;
        Horizon = f.Horizon;
        BlockTokens = blockTokens;
        BlockFloats = blockFloats;
        Pieces = Layers * 2 * KvHeads;
        SlotBlocks = (Init + Window + blockTokens - 1) / blockTokens;
        if (Compressed > 0)
        {
            CoefficientUnitsPerBlock = (int)Math.Min(Pieces, blockFloats / ((long)Coefficients * Compressed));
            if (CoefficientUnitsPerBlock == 0)
            {
                throw new ArgumentException(
                    $"Fourier coefficients of one head ({Coefficients} × {Compressed} floats) exceed a cache block of {blockFloats} floats; use larger blocks or fewer frequencies.");
            }

            CoefficientBlocks = (Pieces + CoefficientUnitsPerBlock - 1) / CoefficientUnitsPerBlock;
        }

        if (Exact > 0)
        {
            MiddleTokensPerBlock = (int)(blockFloats / ((long)Pieces * Exact));
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

    /// <summary>Compressed dims per head and side (m).</summary>
    public int Compressed { get; }

    /// <summary>Exact dims of a middle token per head and side (e = head_dim − m).</summary>
    public int Exact { get; }

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

    public int CoefficientUnitsPerBlock { get; }

    public int CoefficientBlocks { get; }

    public int MiddleTokensPerBlock { get; }

    public int MiddleBlocks { get; }

    /// <summary>[Horizon][2k] orthonormal basis rows φ(u).</summary>
    public float* Basis { get; }

    public int* Order { get; }

    public int* OrderOf(int layer, int side, int head) => Order + ((long)(layer * 2 + side) * KvHeads + head) * HeadDim;

    /// <summary>Middle tokens at <paramref name="position"/> tokens.</summary>
    public int MiddleCount(int position) => Math.Max(0, position - Init - Window);

    /// <summary>
    /// Bytes held at <paramref name="position"/>: 4 · 2 · layers · kvHeads · [head_dim · min(p, init + W)
    /// + (p &gt; init + W ? 2k · m + (head_dim − m) · (p − init − W) : 0)].
    /// </summary>
    public long BytesAt(int position)
    {
        int middle = MiddleCount(position);
        long floatsPerPiece = (long)HeadDim * Math.Min(position, Init + Window)
            + (middle > 0 ? (long)Coefficients * Compressed + (long)Exact * middle : 0);
        return floatsPerPiece * Pieces * sizeof(float);
    }

    /// <summary>Pool blocks of each table a cache of <paramref name="position"/> tokens holds.</summary>
    public (int Slots, int Coefficients, int Middle) BlocksAt(int position)
    {
        int middle = MiddleCount(position);
        return (
            (Math.Min(position, Init + Window) + BlockTokens - 1) / BlockTokens,
            middle > 0 ? CoefficientBlocks : 0,
            middle > 0 && Exact > 0 ? (middle + MiddleTokensPerBlock - 1) / MiddleTokensPerBlock : 0);
    }

    /// <summary>Token slot of position n: init tokens first, then the window ring.</summary>
    public int SlotOf(int position) => position < Init ? position : Init + (position - Init) % Window;

    public void Dispose()
    {
        NativeMemory.Free(Order);
        NativeMemory.AlignedFree(Basis);
    }
}
