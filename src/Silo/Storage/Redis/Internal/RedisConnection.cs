using System.Buffers;
using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace KvCache.Silo.Storage.Redis.Internal;

/// <summary>
/// One TCP (or TLS) connection to Redis. Writers take turns under a lock and queue their command before
/// writing it, so the queue order is the wire order; one reader loop matches replies FIFO. Bulk replies
/// of commands that name a destination are read straight from the socket into it.
/// </summary>
internal sealed class RedisConnection : IAsyncDisposable
{
    private const int ReadBufferSize = 64 * 1024;
    private const int MaxLineLength = 1 << 20;

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly string _endpoint;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentQueue<Pending> _pending = new();
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(ReadBufferSize);
    private int _start;
    private int _end;
    private Exception? _fault;
    private volatile bool _readerDone;
    private Task _reader = Task.CompletedTask;

    private RedisConnection(Socket socket, Stream stream, string endpoint, ILogger logger)
    {
        _socket = socket;
        _stream = stream;
        _endpoint = endpoint;
        _logger = logger;
    }

    public bool IsFaulted => Volatile.Read(ref _fault) is not null;

    public static async Task<RedisConnection> ConnectAsync(RedisClientOptions options, ILogger logger)
    {
        var (host, port) = options.ParseEndpoint();
        using var timeout = new CancellationTokenSource(options.ConnectTimeout);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        RedisConnection? connection = null;
        try
        {
            await socket.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
            Stream stream = new NetworkStream(socket, ownsSocket: false);
            if (options.UseTls)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                await ssl.AuthenticateAsClientAsync(
                    new SslClientAuthenticationOptions { TargetHost = options.TlsTargetHost ?? host },
                    timeout.Token).ConfigureAwait(false);
            }

            connection = new RedisConnection(socket, stream, options.Endpoint, logger);
            connection._reader = connection.ReadLoopAsync();
            if (!string.IsNullOrEmpty(options.Password))
            {
                using var auth = options.User is null
                    ? RedisRequest.Create("AUTH", options.Password)
                    : RedisRequest.Create("AUTH", options.User, options.Password);
                await connection.ExecuteAsync(auth, default, readInto: false, timeout.Token).ConfigureAwait(false);
            }

            if (options.Database != 0)
            {
                using var select = RedisRequest.Create("SELECT", options.Database);
                await connection.ExecuteAsync(select, default, readInto: false, timeout.Token).ConfigureAwait(false);
            }

            RedisLog.Connected(logger, options.Endpoint, options.Database, options.UseTls);
            return connection;
        }
        catch (Exception e)
        {
            if (connection is not null)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                socket.Dispose();
            }

            RedisLog.ConnectFailed(logger, options.Endpoint, e);
            throw e switch
            {
                RedisConnectionException => e,
                RedisException re => new RedisException(re.Message, re), // e.g. WRONGPASS: the server's words
                OperationCanceledException => new RedisConnectionException($"Connecting to Redis at {options.Endpoint} timed out after {options.ConnectTimeout}.", e),
                _ => new RedisConnectionException($"Could not connect to Redis at {options.Endpoint}: {e.Message}", e),
            };
        }
    }

    /// <summary>
    /// Sends the request and waits for its reply. With <paramref name="readInto"/>, a bulk reply goes into
    /// <paramref name="destination"/> and the wait cannot be cancelled (the reader may be writing into it).
    /// </summary>
    public async ValueTask<RedisReply> ExecuteAsync(RedisRequest request, Memory<byte> destination, bool readInto, CancellationToken cancellationToken)
    {
        var pending = new Pending(destination, readInto);
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Volatile.Read(ref _fault) is { } fault)
            {
                throw Lost(fault);
            }

            _pending.Enqueue(pending);
            if (_readerDone)
            {
                // The reader already failed what it found queued; fail what it could not see.
                FailPending();
            }
            else
            {
                try
                {
                    await request.WriteToAsync(_stream).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    // The reader loop ends on the closed socket and fails this command with the rest.
                    Fault(e);
                }
            }
        }
        finally
        {
            _writeLock.Release();
        }

        var reply = readInto
            ? await pending.Completion.Task.ConfigureAwait(false)
            : await pending.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (reply.Kind == RedisReplyKind.Error)
        {
            throw new RedisException(reply.Text!);
        }

        if (reply.DidNotFit)
        {
            throw new ArgumentException($"Reply of {reply.Length} bytes to '{request.Name}' does not fit in {destination.Length} bytes.", nameof(destination));
        }

        return reply;
    }

    public async ValueTask DisposeAsync()
    {
        Fault(new ObjectDisposedException(nameof(RedisConnection)));
        await _reader.ConfigureAwait(false);
        _stream.Dispose();
        _writeLock.Dispose();
    }

    private void Fault(Exception e)
    {
        if (Interlocked.CompareExchange(ref _fault, e, null) is null)
        {
            // Closing the socket wakes the reader, which then fails everything in flight.
            _socket.Dispose();
        }
    }

    private RedisConnectionException Lost(Exception fault) =>
        fault as RedisConnectionException ?? new RedisConnectionException($"Connection to Redis at {_endpoint} was lost: {fault.Message}", fault);

    private void FailPending()
    {
        var error = Lost(Volatile.Read(ref _fault) ?? new EndOfStreamException());
        while (_pending.TryDequeue(out var p))
        {
            p.Completion.TrySetException(error);
        }
    }

    private async Task ReadLoopAsync()
    {
        await Task.Yield();
        try
        {
            while (true)
            {
                await EnsureLineAsync().ConfigureAwait(false);
                if (!_pending.TryPeek(out var pending))
                {
                    throw new RedisConnectionException($"Redis at {_endpoint} sent a reply nobody asked for.");
                }

                var reply = await ReadReplyAsync(pending).ConfigureAwait(false);
                _pending.TryDequeue(out _);
                pending.Completion.TrySetResult(reply);
            }
        }
        catch (Exception e)
        {
            if (!IsFaulted)
            {
                RedisLog.ConnectionLost(_logger, _endpoint, e);
            }

            Fault(e is EndOfStreamException ? new RedisConnectionException($"Redis at {_endpoint} closed the connection.", e) : e);
        }
        finally
        {
            _readerDone = true;
            FailPending();
            var buffer = _buffer;
            _buffer = [];
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async ValueTask<RedisReply> ReadReplyAsync(Pending? pending)
    {
        int lineEnd = await EnsureLineAsync().ConfigureAwait(false);
        byte type = _buffer[_start];
        int contentStart = _start + 1;
        int contentLength = lineEnd - contentStart;
        _start = lineEnd + 2;
        switch (type)
        {
            case (byte)'+':
                return RedisReply.Simple(Encoding.UTF8.GetString(_buffer, contentStart, contentLength));
            case (byte)'-':
                return RedisReply.Error(Encoding.UTF8.GetString(_buffer, contentStart, contentLength));
            case (byte)':':
                return RedisReply.FromInteger(ParseInteger(contentStart, contentLength));
            case (byte)'$':
            {
                long n = ParseInteger(contentStart, contentLength);
                if (n < 0)
                {
                    return RedisReply.Null;
                }

                if (n > int.MaxValue)
                {
                    throw new RedisConnectionException($"Redis at {_endpoint} sent a bulk string of {n} bytes.");
                }

                if (pending is { ReadInto: true })
                {
                    bool fits = n <= pending.Destination.Length;
                    await ReadBulkAsync(fits ? pending.Destination[..(int)n] : default, (int)n).ConfigureAwait(false);
                    return RedisReply.BulkRead((int)n, fits);
                }

                var bytes = new byte[n];
                await ReadBulkAsync(bytes, (int)n).ConfigureAwait(false);
                return RedisReply.Bulk(bytes);
            }

            case (byte)'*':
            {
                long n = ParseInteger(contentStart, contentLength);
                if (n < 0)
                {
                    return RedisReply.Null;
                }

                var items = new RedisReply[n];
                for (int i = 0; i < items.Length; i++)
                {
                    items[i] = await ReadReplyAsync(null).ConfigureAwait(false);
                }

                return RedisReply.FromItems(items);
            }

            default:
                throw new RedisConnectionException($"Redis at {_endpoint} sent an unknown reply type '{(char)type}'.");
        }
    }

    /// <summary>Reads a bulk string's n bytes and its CRLF; into destination, or discarded if it is empty.</summary>
    private async ValueTask ReadBulkAsync(Memory<byte> destination, int n)
    {
        int buffered = Math.Min(n, _end - _start);
        if (!destination.IsEmpty)
        {
            _buffer.AsSpan(_start, buffered).CopyTo(destination.Span);
        }

        _start += buffered;
        int remaining = n - buffered;
        if (remaining > 0 && !destination.IsEmpty)
        {
            // The read buffer is empty now: the rest goes from the socket into caller memory, no copy.
            await _stream.ReadExactlyAsync(destination[buffered..]).ConfigureAwait(false);
            remaining = 0;
        }

        while (remaining > 0)
        {
            await FillAsync().ConfigureAwait(false);
            int skip = Math.Min(remaining, _end - _start);
            _start += skip;
            remaining -= skip;
        }

        while (_end - _start < 2)
        {
            await FillAsync().ConfigureAwait(false);
        }

        if (_buffer[_start] != '\r' || _buffer[_start + 1] != '\n')
        {
            throw new RedisConnectionException($"Redis at {_endpoint} sent a bulk string without its CRLF.");
        }

        _start += 2;
    }

    /// <summary>Makes sure a whole line is buffered from _start; returns the index of its CR.</summary>
    private async ValueTask<int> EnsureLineAsync()
    {
        int searched = 0;
        while (true)
        {
            int found = _buffer.AsSpan(_start + searched, _end - _start - searched).IndexOf("\r\n"u8);
            if (found >= 0)
            {
                return _start + searched + found;
            }

            searched = Math.Max(0, _end - _start - 1);
            if (searched > MaxLineLength)
            {
                throw new RedisConnectionException($"Redis at {_endpoint} sent a line longer than {MaxLineLength} bytes.");
            }

            await FillAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Reads more bytes after _end, compacting or growing the buffer first if needed.</summary>
    private async ValueTask FillAsync()
    {
        if (_start == _end)
        {
            _start = _end = 0;
        }
        else if (_end == _buffer.Length)
        {
            int held = _end - _start;
            byte[] target = held > _buffer.Length / 2 ? ArrayPool<byte>.Shared.Rent(_buffer.Length * 2) : _buffer;
            Buffer.BlockCopy(_buffer, _start, target, 0, held);
            if (!ReferenceEquals(target, _buffer))
            {
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = target;
            }

            _start = 0;
            _end = held;
        }

        int read = await _stream.ReadAsync(_buffer.AsMemory(_end)).ConfigureAwait(false);
        if (read == 0)
        {
            throw new EndOfStreamException();
        }

        _end += read;
    }

    private long ParseInteger(int start, int length)
    {
        if (!Utf8Parser.TryParse(_buffer.AsSpan(start, length), out long value, out int consumed) || consumed != length)
        {
            throw new RedisConnectionException($"Redis at {_endpoint} sent a malformed integer.");
        }

        return value;
    }

    private sealed class Pending(Memory<byte> destination, bool readInto)
    {
        public Memory<byte> Destination { get; } = destination;
        public bool ReadInto { get; } = readInto;
        public TaskCompletionSource<RedisReply> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
