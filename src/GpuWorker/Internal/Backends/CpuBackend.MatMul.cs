using System.Runtime.CompilerServices;

namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>Matrix multiplication: output rows split in tiles across the compute threads.</summary>
internal sealed unsafe partial class CpuBackend
{
    private const int MatMulTile = 16;

    private readonly MatMulJob _matMul = new();

    public void MatMul(float* x, int rows, int inDim, float* weight, int outDim, float* y)
    {
        int tiles = (outDim + MatMulTile - 1) / MatMulTile;
        bool parallel = (long)rows * inDim * outDim >= ParallelThreshold;
        lock (_gate)
        {
            _matMul.Set(x, rows, inDim, weight, outDim, y);
            if (parallel)
            {
                _pool.Run(_matMul, tiles);
            }
            else
            {
                for (int t = 0; t < tiles; t++)
                {
                    _matMul.Execute(t, 0);
                }
            }
        }
    }

    private sealed class MatMulJob : ParallelJob
    {
        private float* _x, _w, _y;
        private int _rows, _in, _out;

        public void Set(float* x, int rows, int inDim, float* weight, int outDim, float* y)
        {
            _x = x;
            _rows = rows;
            _in = inDim;
            _w = weight;
            _out = outDim;
            _y = y;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int index, int thread)
        {
            int end = Math.Min(_out, (index + 1) * MatMulTile);
            for (int o = index * MatMulTile; o < end; o++)
            {
                // Weight row outer, token rows inner: the row is read from memory once per chunk.
                float* w = _w + (long)o * _in;
                for (int r = 0; r < _rows; r++)
                {
                    _y[(long)r * _out + o] = Kernels.Dot(_x + (long)r * _in, w, _in);
                }
            }
        }
    }
}
