using System.Runtime.CompilerServices;

namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>
/// Matrix multiplication: output rows split in tiles across the compute threads. Token rows go four at a time
/// through LinearTile4x6 (four rows by six outputs), a lone row through LinearTile1x8; every output is exactly
/// LinearDot(x row, weight row), so a row's result never depends on how many rows share the call, nor on the tiling.
/// </summary>
internal sealed unsafe partial class CpuBackend
{
    // Tiles are sized in weight bytes. A GEMV streams each weight once: long contiguous runs per thread keep the
    // hardware prefetchers ahead (16-row tiles of a bf16 768-wide matrix, 24 KiB, lost a third of the bandwidth on
    // 2 threads). With four or more token rows a tile must stay in L2 while every row group sweeps it.
    private const long GemvTileBytes = 512 << 10;
    private const long GemmTileBytes = 192 << 10;

    // Keeps the dynamic split balanced when a matrix has few output rows.
    private const int MinTilesPerThread = 4;

    // A multiple of both kernels' output counts (6 and 8).
    private const int TileGranule = 24;

    private readonly MatMulJob<F32Weights, float> _matMul = new();
    private readonly MatMulJob<Bf16Weights, ushort> _matMulBf16 = new();

    public void MatMul(float* x, int rows, int inDim, in LinearWeight weight, int outDim, float* y)
    {
        if (weight.IsBf16)
        {
            MatMulBf16(x, rows, inDim, (ushort*)weight.Data, outDim, y);
        }
        else
        {
            MatMul(x, rows, inDim, (float*)weight.Data, outDim, y);
        }
    }

    public void MatMul(float* x, int rows, int inDim, float* weight, int outDim, float* y) =>
        MatMul(_matMul, x, rows, inDim, weight, outDim, y);

    /// <summary>MatMul over bf16 weights: half the bytes read, bit-identical to MatMul over their f32 widening.</summary>
    public void MatMulBf16(float* x, int rows, int inDim, ushort* weight, int outDim, float* y) =>
        MatMul(_matMulBf16, x, rows, inDim, weight, outDim, y);

    private void MatMul<TFormat, T>(MatMulJob<TFormat, T> job, float* x, int rows, int inDim, T* weight, int outDim, float* y)
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        long tileBytes = rows < 4 ? GemvTileBytes : GemmTileBytes;
        int tileRows = (int)Math.Clamp(tileBytes / ((long)inDim * sizeof(T)), 1, Math.Max(1, outDim / (MinTilesPerThread * _pool.Threads)));

        // Whole tiles of either kernel, so only the matrix's last few outputs take the one-output path.
        tileRows = Math.Max(TileGranule, tileRows / TileGranule * TileGranule);
        int tiles = (outDim + tileRows - 1) / tileRows;
        bool parallel = (long)rows * inDim * outDim >= ParallelThreshold;
        lock (_gate)
        {
            job.Set(x, rows, inDim, weight, outDim, y, tileRows);
            _pool.Run(job, tiles, inline: !parallel);
        }
    }

    private sealed class MatMulJob<TFormat, T> : ParallelJob
        where TFormat : IWeightFormat<T>
        where T : unmanaged
    {
        private float* _x, _y;
        private T* _w;
        private int _rows, _in, _out, _tileRows;

        public void Set(float* x, int rows, int inDim, T* weight, int outDim, float* y, int tileRows)
        {
            _x = x;
            _rows = rows;
            _in = inDim;
            _w = weight;
            _out = outDim;
            _y = y;
            _tileRows = tileRows;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int index, int thread)
        {
            int start = index * _tileRows, end = Math.Min(_out, start + _tileRows);
            int r = 0;
            // Token rows outer, weight rows inner: the tile's weight rows are read from memory once and stay in
            // cache while each group of four token rows sweeps them.
            // Only the first sweep streams from memory, and it prefetches where the hardware prefetchers fall behind:
            // four rows' FMAs per weight, or bf16's two weights per byte, leave the out-of-order window too few cache
            // lines ahead. An f32 GEMV keeps up alone and only pays for it.
            for (; r <= _rows - 4; r += 4)
            {
                float* x = _x + (long)r * _in;
                float* y = _y + (long)r * _out;
                int o = start;
                for (; o <= end - Kernels.Tile4Outputs; o += Kernels.Tile4Outputs)
                {
                    Kernels.LinearTile4x6<TFormat, T>(x, _in, _w + (long)o * _in, _in, _in, y + o, _out, prefetch: r == 0);
                }

                for (; o < end; o++)
                {
                    for (int i = 0; i < 4; i++)
                    {
                        y[(long)i * _out + o] = Kernels.LinearDot<TFormat, T>(x + (long)i * _in, _w + (long)o * _in, _in);
                    }
                }
            }

            for (; r < _rows; r++)
            {
                float* x = _x + (long)r * _in;
                float* y = _y + (long)r * _out;
                bool prefetch = r == 0 && sizeof(T) < sizeof(float);
                int o = start;
                for (; o <= end - Kernels.Tile1Outputs; o += Kernels.Tile1Outputs)
                {
                    Kernels.LinearTile1x8<TFormat, T>(x, _w + (long)o * _in, _in, _in, y + o, prefetch);
                }

                for (; o < end; o++)
                {
                    y[o] = Kernels.LinearDot<TFormat, T>(x, _w + (long)o * _in, _in);
                }
            }
        }
    }
}
