using System.Buffers.Binary;
using System.Numerics;

namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Streaming 64-bit hash (xxHash64-style rounds over four independent lanes, so it runs at several GB/s).
/// Stable across platforms and runs; used for model fingerprints, not for security.
/// </summary>
internal struct Hash64
{
    private const ulong P1 = 11400714785074694791UL;
    private const ulong P2 = 14029467366897019727UL;
    private const ulong P3 = 1609587929392839161UL;
    private const ulong P4 = 9650029242287828579UL;

    private ulong _v1, _v2, _v3, _v4;
    private ulong _length;

    public Hash64(ulong seed)
    {
        _v1 = seed + P1 + P2;
        _v2 = seed + P2;
        _v3 = seed;
        _v4 = seed - P1;
        _length = 0;
    }

    /// <summary>Mixes <paramref name="data"/> in; the length is mixed too, so boundaries between calls count.</summary>
    public void Append(ReadOnlySpan<byte> data)
    {
        _length += (ulong)data.Length;
        int i = 0;
        for (; i <= data.Length - 32; i += 32)
        {
            _v1 = Round(_v1, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
            _v2 = Round(_v2, BinaryPrimitives.ReadUInt64LittleEndian(data[(i + 8)..]));
            _v3 = Round(_v3, BinaryPrimitives.ReadUInt64LittleEndian(data[(i + 16)..]));
            _v4 = Round(_v4, BinaryPrimitives.ReadUInt64LittleEndian(data[(i + 24)..]));
        }

        for (; i < data.Length; i++)
        {
            _v1 = Round(_v1, data[i] + 1UL);
        }

        _v2 = Round(_v2, (ulong)data.Length);
    }

    public readonly ulong Finish()
    {
        ulong h = BitOperations.RotateLeft(_v1, 1) + BitOperations.RotateLeft(_v2, 7)
            + BitOperations.RotateLeft(_v3, 12) + BitOperations.RotateLeft(_v4, 18);
        h = (h ^ Round(0, _v1)) * P1 + P4;
        h = (h ^ Round(0, _v2)) * P1 + P4;
        h = (h ^ Round(0, _v3)) * P1 + P4;
        h = (h ^ Round(0, _v4)) * P1 + P4;
        h += _length;
        h ^= h >> 33;
        h *= P2;
        h ^= h >> 29;
        h *= P3;
        h ^= h >> 32;
        return h;
    }

    private static ulong Round(ulong acc, ulong input)
    {
        acc += input * P2;
        acc = BitOperations.RotateLeft(acc, 31);
        return acc * P1;
    }
}

/// <summary>SplitMix64: tiny, fast, and bit-exact on every platform (used by the generator, sampler and bench).</summary>
internal struct SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [-1, 1), exactly representable (24 random bits).</summary>
    public float NextSigned() => (int)(Next() >> 40) * (1f / (1 << 23)) - 1f;

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    public static ulong Mix(ulong a, ulong b) => new SplitMix64(a ^ new SplitMix64(b).Next()).Next();
}
