using System.Runtime.CompilerServices;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// bf16, the upper 16 bits of an f32: weights stored this way halve the bytes a memory-bound decode step reads,
/// and widen back exactly.
/// </summary>
internal static class Bf16
{
    /// <summary>Round to nearest even, as torch does when casting f32 to bf16; NaN stays NaN (quiet), infinities stay.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            // Truncation could drop every payload bit and turn the NaN into an infinity: force the quiet bit.
            return (ushort)((bits >> 16) | 0x40);
        }

        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort value) => BitConverter.UInt32BitsToSingle((uint)value << 16);

    /// <summary>Replaces each value by its bf16 rounding, widened back: the value a bf16 cache hands attention.</summary>
    public static void Round(Span<float> values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = ToSingle(FromSingle(values[i]));
        }
    }

    public static void Convert(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, source.Length, nameof(destination));
        for (int i = 0; i < source.Length; i++)
        {
            destination[i] = FromSingle(source[i]);
        }
    }
}
