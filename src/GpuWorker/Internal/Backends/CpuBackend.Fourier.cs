namespace KvCache.GpuWorker.Internal.Backends;

internal sealed partial class CpuBackend
{
    public void Run(ParallelJob job, int count)
    {
        lock (_gate)
        {
            _pool.Run(job, count);
        }
    }
}
