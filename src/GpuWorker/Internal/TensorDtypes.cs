namespace KvCache.GpuWorker.Internal;

internal static class TensorDtypes
{
    public static int Size(TensorDtype dtype) => dtype == TensorDtype.F32 ? 4 : 2;

    public static string Name(TensorDtype dtype) => dtype switch
    {
        TensorDtype.F32 => "F32",
        TensorDtype.F16 => "F16",
        _ => "BF16",
    };

    public static string TorchName(TensorDtype dtype) => dtype switch
    {
        TensorDtype.F32 => "float32",
        TensorDtype.F16 => "float16",
        _ => "bfloat16",
    };

    public static bool TryParse(string? name, out TensorDtype dtype)
    {
        switch (name)
        {
            case "F32": dtype = TensorDtype.F32; return true;
            case "F16": dtype = TensorDtype.F16; return true;
            case "BF16": dtype = TensorDtype.BF16; return true;
            default: dtype = default; return false;
        }
    }
}
