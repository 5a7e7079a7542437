using System.Globalization;
using System.Text;

namespace KvCache.Silo.Storage.Redis;

/// <summary>One argument of a command: text (UTF-8), an integer, or bytes taken by reference.</summary>
public readonly struct RedisArgument
{
    private readonly string? _text;
    private readonly long _integer;
    private readonly ReadOnlyMemory<byte> _bytes;
    private readonly byte _kind; // 0 text, 1 integer, 2 bytes

    private RedisArgument(string? text, long integer, ReadOnlyMemory<byte> bytes, byte kind)
    {
        _text = text;
        _integer = integer;
        _bytes = bytes;
        _kind = kind;
    }

    public static implicit operator RedisArgument(string text) => new(text ?? throw new ArgumentNullException(nameof(text)), 0, default, 0);

    public static implicit operator RedisArgument(long integer) => new(null, integer, default, 1);

    public static implicit operator RedisArgument(ReadOnlyMemory<byte> bytes) => new(null, 0, bytes, 2);

    public static implicit operator RedisArgument(byte[] bytes) => new(null, 0, bytes, 2);

    internal void AddTo(RedisRequest request)
    {
        switch (_kind)
        {
            case 0:
                request.Add(_text!);
                break;
            case 1:
                request.Add(_integer);
                break;
            default:
                request.Add(_bytes);
                break;
        }
    }

    public override string ToString() => _kind switch
    {
        0 => _text!,
        1 => _integer.ToString(CultureInfo.InvariantCulture),
        _ => _bytes.Length <= 64 ? Encoding.UTF8.GetString(_bytes.Span) : $"({_bytes.Length} bytes)",
    };
}
