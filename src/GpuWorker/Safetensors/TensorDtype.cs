namespace KvCache.GpuWorker;

/// <summary>Storage dtype of a safetensors tensor. The engine converts all of them to f32 at load.</summary>
public enum TensorDtype
{
    F32,
    F16,
    BF16,
}

/// <summary>One tensor of a safetensors file: its dtype, shape and byte range in the data section.</summary>
public sealed record SafetensorsTensorInfo(string Name, TensorDtype Dtype, int[] Shape, long DataOffset, long ByteLength)
{
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (int d in Shape)
            {
                n *= d;
            }

            return n;
        }
    }
}
