using System.Buffers;
using System.Buffers.Text;
using System.Text;

namespace KvCache.Silo.Storage.Redis;

/// <summary>
/// One command in RESP2 form. Small arguments are encoded into a pooled buffer; large byte arguments are kept
/// by reference and written to the socket straight from caller memory, which must stay unchanged until the
/// command completes. Dispose returns the buffer.
/// </summary>
public sealed class RedisRequest : IDisposable
{
    // Below this, copying beats a separate socket write.
    private const int InlineLimit = 16 * 1024;

    private readonly int _argumentCount;
    private byte[] _buffer;
    private int _length;
    private int _added;
    private List<(int End, ReadOnlyMemory<byte> Bytes)>? _external;

    public RedisRequest(int argumentCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(argumentCount);
        _argumentCount = argumentCount;
        _buffer = ArrayPool<byte>.Shared.Rent(256);
        WriteHeader((byte)'*', argumentCount);
    }

    /// <summary>Builds a request from its arguments, the command name first.</summary>
    public static RedisRequest Create(params ReadOnlySpan<RedisArgument> arguments)
    {
        var request = new RedisRequest(arguments.Length);
        foreach (var argument in arguments)
        {
            argument.AddTo(request);
        }

        return request;
    }

    /// <summary>The command name (first argument) for messages.</summary>
    public string? Name { get; private set; }

    public RedisRequest Add(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int n = Encoding.UTF8.GetByteCount(text);
        WriteHeader((byte)'$', n);
        Ensure(n + 2);
        Encoding.UTF8.GetBytes(text, _buffer.AsSpan(_length));
        _length += n;
        WriteCrLf();
        Name ??= text;
        return Counted();
    }

    public RedisRequest Add(long value)
    {
        Span<byte> digits = stackalloc byte[20];
        Utf8Formatter.TryFormat(value, digits, out int n);
        return Add(digits[..n]);
    }

    /// <summary>Adds bytes, copied now.</summary>
    public RedisRequest Add(ReadOnlySpan<byte> bytes)
    {
        WriteHeader((byte)'$', bytes.Length);
        Ensure(bytes.Length + 2);
        bytes.CopyTo(_buffer.AsSpan(_length));
        _length += bytes.Length;
        WriteCrLf();
        return Counted();
    }

    /// <summary>Adds bytes; large ones are referenced, not copied.</summary>
    public RedisRequest Add(ReadOnlyMemory<byte> bytes)
    {
        if (bytes.Length < InlineLimit)
        {
            return Add(bytes.Span);
        }

        WriteHeader((byte)'$', bytes.Length);
        (_external ??= []).Add((_length, bytes));
        WriteCrLf();
        return Counted();
    }

    internal async ValueTask WriteToAsync(Stream stream)
    {
        if (_added != _argumentCount)
        {
            throw new InvalidOperationException($"Request '{Name}' declared {_argumentCount} arguments but has {_added}.");
        }

        // Not cancellable: a command cut short would desynchronize the connection.
        int start = 0;
        if (_external is not null)
        {
            foreach (var (end, bytes) in _external)
            {
                await stream.WriteAsync(_buffer.AsMemory(start, end - start)).ConfigureAwait(false);
                await stream.WriteAsync(bytes).ConfigureAwait(false);
                start = end;
            }
        }

        await stream.WriteAsync(_buffer.AsMemory(start, _length - start)).ConfigureAwait(false);
    }

    public void Dispose()
    {
        var buffer = _buffer;
        _buffer = [];
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private RedisRequest Counted()
    {
        _added++;
        return this;
    }

    private void WriteHeader(byte prefix, int value)
    {
        Ensure(24);
        _buffer[_length++] = prefix;
        Utf8Formatter.TryFormat(value, _buffer.AsSpan(_length), out int n);
        _length += n;
        WriteCrLf();
    }

    private void WriteCrLf()
    {
        Ensure(2);
        _buffer[_length++] = (byte)'\r';
        _buffer[_length++] = (byte)'\n';
    }

    private void Ensure(int extra)
    {
        ObjectDisposedException.ThrowIf(_buffer.Length == 0, this);
        if (_length + extra > _buffer.Length)
        {
            byte[] bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_length + extra, _buffer.Length * 2));
            _buffer.AsSpan(0, _length).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
    }
}
