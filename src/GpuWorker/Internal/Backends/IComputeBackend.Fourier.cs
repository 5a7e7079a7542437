namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>The op the fourier codec needs: its attention kernel lives beside its cache (<see cref="FourierAttentionJob"/>).</summary>
internal partial interface IComputeBackend
{
    /// <summary>
    /// Runs job indices [0, count) on the compute threads, serialized with the backend's other parallel ops
    /// (host-memory jobs only).
    /// </summary>
    void Run(ParallelJob job, int count);
}
