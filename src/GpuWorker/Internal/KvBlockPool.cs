using System.Runtime.InteropServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// A model's cache memory: one native allocation cut into fixed-size blocks, cleared at construction so the
/// first-touch page cost is paid at load, not during decode. Caches take and return whole blocks.
/// </summary>
internal sealed unsafe class KvBlockPool : IDisposable
{
    private readonly Lock _gate = new();
    private readonly int[] _free;
    private int _freeCount;
    private bool _disposed;

    public KvBlockPool(long blockBytes, long budgetBytes)
    {
        BlockBytes = blockBytes;
        BlockCount = (int)Math.Min(int.MaxValue, budgetBytes / blockBytes);
        nuint bytes = (nuint)(BlockCount * blockBytes);
        Base = (byte*)LargePages.Allocate(bytes);
        NativeMemory.Clear(Base, bytes);
        _free = new int[BlockCount];
        for (int i = 0; i < BlockCount; i++)
        {
            // Hand out low blocks first (stack top = block 0).
            _free[i] = BlockCount - 1 - i;
        }

        _freeCount = BlockCount;
    }

    public byte* Base { get; }

    public long BlockBytes { get; }

    /// <summary>f32 elements per block, for the fourier cache (always f32).</summary>
    public long BlockFloats => BlockBytes / sizeof(float);

    public int BlockCount { get; }

    /// <summary>Start of block <paramref name="block"/> as f32 elements.</summary>
    public float* Floats(int block) => (float*)(Base + block * BlockBytes);

    /// <summary>Zeroes block <paramref name="block"/>: blocks come back from other caches dirty.</summary>
    public void Clear(int block) => NativeMemory.Clear(Base + block * BlockBytes, (nuint)BlockBytes);

    public int FreeBlocks
    {
        get
        {
            lock (_gate)
            {
                return _freeCount;
            }
        }
    }

    /// <summary>Takes <paramref name="count"/> blocks into destination, or none when fewer are free.</summary>
    public bool TryTake(Span<int> destination)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (destination.Length > _freeCount)
            {
                return false;
            }

            for (int i = 0; i < destination.Length; i++)
            {
                destination[i] = _free[--_freeCount];
            }

            return true;
        }
    }

    public void Return(ReadOnlySpan<int> blocks)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            foreach (int b in blocks)
            {
                _free[_freeCount++] = b;
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            NativeMemory.AlignedFree(Base);
        }
    }
}
