using System.Buffers;
using System.Buffers.Binary;

namespace KvCache.Transport.Internal;

/// <summary>
/// Splits a response body into gRPC messages through one pooled buffer that grows to the largest message seen,
/// so reading a stream allocates nothing per message. Not thread-safe; Dispose only when no read is pending.
/// </summary>
internal sealed class FrameReader(Stream stream, int? maxMessageSize) : IDisposable
{
    private const int InitialBufferSize = 16 * 1024;

    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(InitialBufferSize);
    private int _start;
    private int _end;
    private int _payloadStart;
    private int _payloadLength;

    /// <summary>The last message read; valid until the next read.</summary>
    public ReadOnlySpan<byte> Payload => _buffer.AsSpan(_payloadStart, _payloadLength);

    /// <summary>Reads the next message into <see cref="Payload"/>; false at a clean end of the body.</summary>
    public async ValueTask<bool> ReadAsync(CancellationToken cancellationToken)
    {
        if (!await FillAsync(GrpcProtocol.HeaderSize, cancellationToken).ConfigureAwait(false))
        {
            if (_end == _start)
            {
                return false;
            }

            throw Malformed("Incomplete message header in the response.");
        }

        var flag = _buffer[_start];
        if (flag != 0)
        {
            throw Malformed("The response contains a compressed message, but identity is the only encoding this client accepts.");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(_start + 1, 4));
        if (length > (uint)(maxMessageSize ?? Array.MaxLength - GrpcProtocol.HeaderSize))
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted, GrpcProtocol.ReceiveTooLarge(length, maxMessageSize ?? int.MaxValue)));
        }

        var frameLength = GrpcProtocol.HeaderSize + (int)length;
        if (!await FillAsync(frameLength, cancellationToken).ConfigureAwait(false))
        {
            throw Malformed("Incomplete message in the response.");
        }

        _payloadStart = _start + GrpcProtocol.HeaderSize;
        _payloadLength = (int)length;
        _start += frameLength;
        return true;
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

    /// <summary>Buffers at least <paramref name="count"/> unread bytes; false if the body ends first.</summary>
    private async ValueTask<bool> FillAsync(int count, CancellationToken cancellationToken)
    {
        if (_end - _start >= count)
        {
            return true;
        }

        MakeRoom(count);
        while (_end - _start < count)
        {
            var read = await stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                return false;
            }

            _end += read;
        }

        return true;
    }

    private void MakeRoom(int count)
    {
        var buffered = _end - _start;
        if (_buffer.Length - _start >= count)
        {
            return;
        }

        var target = _buffer.Length >= count ? _buffer : ArrayPool<byte>.Shared.Rent(count);
        Buffer.BlockCopy(_buffer, _start, target, 0, buffered);
        if (!ReferenceEquals(target, _buffer))
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = target;
        }

        _start = 0;
        _end = buffered;
    }

    private static RpcException Malformed(string detail) => new(new Status(StatusCode.Internal, detail));
}
