using System.Buffers;
using System.Text;

namespace KvCache.Transport.Internal;

/// <summary>
/// The grpc-message encoding: UTF-8 bytes outside printable ASCII (0x20-0x7E) and '%' become %XX.
/// Decoding is lenient, as the spec asks: malformed escapes pass through unchanged.
/// </summary>
internal static class PercentEncoding
{
    public static string Encode(string value)
    {
        var needsEncoding = false;
        foreach (var c in value)
        {
            if (c < 0x20 || c > 0x7E || c == '%')
            {
                needsEncoding = true;
                break;
            }
        }

        if (!needsEncoding)
        {
            return value;
        }

        var maxBytes = Encoding.UTF8.GetMaxByteCount(value.Length);
        var rented = ArrayPool<byte>.Shared.Rent(maxBytes);
        try
        {
            var count = Encoding.UTF8.GetBytes(value, rented);
            var builder = new StringBuilder(count * 2);
            foreach (var b in rented.AsSpan(0, count))
            {
                if (b < 0x20 || b > 0x7E || b == '%')
                {
                    builder.Append('%').Append(HexDigit(b >> 4)).Append(HexDigit(b & 0xF));
                }
                else
                {
                    builder.Append((char)b);
                }
            }

            return builder.ToString();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    public static string Decode(string value)
    {
        if (!value.Contains('%'))
        {
            return value;
        }

        // Decoded bytes are never more than the input characters.
        var rented = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(value.Length));
        try
        {
            var count = 0;
            var runStart = 0;
            for (var i = 0; i < value.Length; i++)
            {
                if (value[i] == '%' && i + 2 < value.Length && TryHex(value[i + 1], out var hi) && TryHex(value[i + 2], out var lo))
                {
                    // Copy the literal run as a whole so surrogate pairs stay intact.
                    count += Encoding.UTF8.GetBytes(value.AsSpan(runStart, i - runStart), rented.AsSpan(count));
                    rented[count++] = (byte)((hi << 4) | lo);
                    i += 2;
                    runStart = i + 1;
                }
            }

            count += Encoding.UTF8.GetBytes(value.AsSpan(runStart), rented.AsSpan(count));
            return Encoding.UTF8.GetString(rented, 0, count);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static char HexDigit(int value) => (char)(value < 10 ? '0' + value : 'A' + value - 10);

    private static bool TryHex(char c, out int value)
    {
        value = c switch
        {
            >= '0' and <= '9' => c - '0',
            >= 'a' and <= 'f' => c - 'a' + 10,
            >= 'A' and <= 'F' => c - 'A' + 10,
            _ => -1,
        };
        return value >= 0;
    }
}
