namespace KvCache.Bench.Internal;

/// <summary>Generated cache contents that read as sane values in either element format (f32 or bf16).</summary>
internal static class CacheValues
{
    /// <summary>
    /// <paramref name="count"/> bf16 values in [-1, 1), reproducible. Read as f32, each pair is a word whose upper half
    /// is one of those bf16 values and whose lower half only perturbs its low mantissa bits: also in [-1, 1), never NaN.
    /// </summary>
    public static ushort[] Bf16Pairs(int count)
    {
        var values = new ushort[count];
        ulong state = 0x9E3779B97F4A7C15UL;
        for (int i = 0; i < values.Length; i++)
        {
            state = state * 6364136223846793005UL + 1442695040888963407UL;
            float value = (int)(state >> 40) * (1f / (1 << 23)) - 1f;
            values[i] = (ushort)(BitConverter.SingleToUInt32Bits(value) >> 16);
        }

        return values;
    }
}
