namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>A linear layer's weight matrix [out, in], row-major, in f32 or bf16 (<see cref="WeightFormat"/>).</summary>
internal readonly unsafe struct LinearWeight(void* data, bool bf16)
{
    public readonly void* Data = data;
    public readonly bool IsBf16 = bf16;

    public static LinearWeight F32(float* data) => new(data, false);
}
