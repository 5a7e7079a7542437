namespace KvCache.GpuWorker;

/// <summary>How a model's paged KV caches keep their key and value vectors; attention always accumulates in f32.</summary>
public enum KvCacheFormat
{
    /// <summary>f32: the keys and values exactly as the projections computed them.</summary>
    F32,

    /// <summary>
    /// bf16, rounded to nearest even as each token is stored: half the memory per session and half the cache bytes a
    /// decode step reads, for a relative error of at most 2⁻⁹ per stored element. Snapshots hold bf16 too, and a model
    /// loaded this way has its own fingerprint, so they never restore into an f32-cache model or back. Every codec
    /// but fourier (whose coefficients are running sums) supports it: a plain model loaded this way offers "full"
    /// only, and one with a fourier calibration refuses it at load.
    /// </summary>
    Bf16,
}
