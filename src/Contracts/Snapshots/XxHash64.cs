using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace KvCache.Contracts.Snapshots;

/// <summary>
/// XXH64 (Yann Collet's xxHash, 64-bit), computed incrementally: <see cref="Append"/> any split of the
/// input gives the same hash as one call over all of it. Written here because System.IO.Hashing cannot be restored.
/// </summary>
public struct XxHash64
{
    private const ulong Prime1 = 0x9E3779B185EBCA87UL;
    private const ulong Prime2 = 0xC2B2AE3D27D4EB4FUL;
    private const ulong Prime3 = 0x165667B19E3779F9UL;
    private const ulong Prime4 = 0x85EBCA77C2B2AE63UL;
    private const ulong Prime5 = 0x27D4EB2F165667C5UL;
    private const int StripeSize = 32;

    private readonly ulong _seed;
    private ulong _acc1, _acc2, _acc3, _acc4;
    private ulong _length;
    private StripeBuffer _pending;
    private int _pendingCount;

    [InlineArray(StripeSize)]
    private struct StripeBuffer
    {
        private byte _element0;
    }

    public XxHash64(ulong seed)
    {
        _seed = seed;
        _acc1 = seed + Prime1 + Prime2;
        _acc2 = seed + Prime2;
        _acc3 = seed;
        _acc4 = seed - Prime1;
    }

    /// <summary>Equivalent to <c>new XxHash64(0)</c>.</summary>
    public XxHash64() : this(0)
    {
    }

    /// <summary>The hash of <paramref name="data"/> in one call.</summary>
    public static ulong Hash(ReadOnlySpan<byte> data, ulong seed = 0)
    {
        var hash = new XxHash64(seed);
        hash.Append(data);
        return hash.GetCurrentHash();
    }

    public void Append(ReadOnlySpan<byte> data)
    {
        _length += (ulong)data.Length;
        Span<byte> pending = _pending;
        if (_pendingCount > 0)
        {
            int take = Math.Min(StripeSize - _pendingCount, data.Length);
            data[..take].CopyTo(pending[_pendingCount..]);
            _pendingCount += take;
            data = data[take..];
            if (_pendingCount < StripeSize)
            {
                return;
            }

            ConsumeStripes(pending);
            _pendingCount = 0;
        }

        int whole = data.Length & ~(StripeSize - 1);
        if (whole > 0)
        {
            ConsumeStripes(data[..whole]);
        }

        data[whole..].CopyTo(pending);
        _pendingCount = data.Length - whole;
    }

    /// <summary>The hash of everything appended so far; appending may continue afterwards.</summary>
    public readonly ulong GetCurrentHash()
    {
        ulong h;
        if (_length >= StripeSize)
        {
            h = BitOperations.RotateLeft(_acc1, 1) + BitOperations.RotateLeft(_acc2, 7)
                + BitOperations.RotateLeft(_acc3, 12) + BitOperations.RotateLeft(_acc4, 18);
            h = MergeRound(h, _acc1);
            h = MergeRound(h, _acc2);
            h = MergeRound(h, _acc3);
            h = MergeRound(h, _acc4);
        }
        else
        {
            h = _seed + Prime5;
        }

        h += _length;
        ReadOnlySpan<byte> tail = ((ReadOnlySpan<byte>)_pending)[.._pendingCount];
        while (tail.Length >= 8)
        {
            h ^= Round(0, BinaryPrimitives.ReadUInt64LittleEndian(tail));
            h = BitOperations.RotateLeft(h, 27) * Prime1 + Prime4;
            tail = tail[8..];
        }

        if (tail.Length >= 4)
        {
            h ^= BinaryPrimitives.ReadUInt32LittleEndian(tail) * Prime1;
            h = BitOperations.RotateLeft(h, 23) * Prime2 + Prime3;
            tail = tail[4..];
        }

        foreach (byte b in tail)
        {
            h ^= b * Prime5;
            h = BitOperations.RotateLeft(h, 11) * Prime1;
        }

        h ^= h >> 33;
        h *= Prime2;
        h ^= h >> 29;
        h *= Prime3;
        h ^= h >> 32;
        return h;
    }

    private void ConsumeStripes(ReadOnlySpan<byte> stripes)
    {
        // Locals keep the four lanes in registers across the loop.
        ulong a1 = _acc1, a2 = _acc2, a3 = _acc3, a4 = _acc4;
        ref byte p = ref Unsafe.AsRef(in stripes[0]);
        for (int i = 0; i < stripes.Length; i += StripeSize)
        {
            a1 = Round(a1, ReadLane(ref p, i));
            a2 = Round(a2, ReadLane(ref p, i + 8));
            a3 = Round(a3, ReadLane(ref p, i + 16));
            a4 = Round(a4, ReadLane(ref p, i + 24));
        }

        _acc1 = a1;
        _acc2 = a2;
        _acc3 = a3;
        _acc4 = a4;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong ReadLane(ref byte p, int offset)
    {
        ulong v = Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref p, offset));
        return BitConverter.IsLittleEndian ? v : BinaryPrimitives.ReverseEndianness(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Round(ulong acc, ulong input)
    {
        acc += input * Prime2;
        acc = BitOperations.RotateLeft(acc, 31);
        return acc * Prime1;
    }

    private static ulong MergeRound(ulong acc, ulong value)
    {
        acc ^= Round(0, value);
        return acc * Prime1 + Prime4;
    }
}
