using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;

namespace KvCache.Transport.Internal;

/// <summary>
/// One client call over one HTTP/2 stream: sends the request, reads messages, and turns the trailers
/// (or any failure on the way) into a <see cref="Status"/>. Every failure surfaces as <see cref="RpcException"/>.
/// </summary>
internal sealed class GrpcCall<TRequest, TResponse> : IAsyncStreamReader<TResponse>, IDisposable
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    private const string UserAgent = "grpc-dotnet-kvcache/1.0";

    // CancellationTokenSource timers cannot exceed this; a longer deadline is as good as none.
    private static readonly TimeSpan s_maxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly GrpcChannel _channel;
    private readonly Method<TRequest, TResponse> _method;
    private readonly CallOptions _options;
    private readonly CancellationTokenSource _cts;
    private readonly Lock _sync = new();
    private HttpResponseMessage? _response;
    private FrameReader? _reader;
    private Task<bool>? _started;
    private Status? _status;
    private Metadata? _trailers;
    private bool _cancelledByClient;
    private bool _reading;
    private bool _disposed;

    public GrpcCall(GrpcChannel channel, Method<TRequest, TResponse> method, CallOptions options)
    {
        _channel = channel;
        _method = method;
        _options = options;
        _cts = options.CancellationToken.CanBeCanceled
            ? CancellationTokenSource.CreateLinkedTokenSource(options.CancellationToken)
            : new CancellationTokenSource();
    }

    public TResponse Current { get; private set; } = null!;

    public async Task<TResponse> UnaryAsync(TRequest request)
    {
        try
        {
            await StartAsync(request).ConfigureAwait(false);
            var response = await ReadNextAsync(CancellationToken.None).ConfigureAwait(false)
                ?? throw new RpcException(new Status(StatusCode.Internal, "The server ended a unary call without a response message."));
            if (await ReadNextAsync(CancellationToken.None).ConfigureAwait(false) is not null)
            {
                throw Fail(new Status(StatusCode.Internal, "The server sent more than one message for a unary call."));
            }

            return response;
        }
        finally
        {
            Dispose();
        }
    }

    /// <summary>Sends the request in the background; the returned task gives the response headers.</summary>
    public Task<Metadata> StartStreaming(TRequest request)
    {
        _started = StartAsync(request);
        var headers = GetHeadersAsync(_started);

        // Callers that only read the stream never await the headers; observe their failure here.
        _ = headers.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return headers;
    }

    public async Task<bool> MoveNext(CancellationToken cancellationToken = default)
    {
        using var registration = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static state => ((GrpcCall<TRequest, TResponse>)state!).CancelByClient(), this)
            : default;
        var message = await ReadNextAsync(cancellationToken).ConfigureAwait(false);
        if (message is null)
        {
            return false;
        }

        Current = message;
        return true;
    }

    public Status GetStatus() =>
        _status ?? throw new InvalidOperationException("Unable to get the status because the call is not complete.");

    public Metadata GetTrailers() =>
        _trailers ?? throw new InvalidOperationException("Unable to get the trailers because the call is not complete.");

    public void Dispose()
    {
        lock (_sync)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (_status is null)
            {
                // Resets the HTTP/2 stream, so the server's cancellation token fires.
                _cancelledByClient = true;
                _status = new Status(StatusCode.Cancelled, "Call disposed before it completed.");
                _trailers = new Metadata();
                _cts.Cancel();
            }

            _response?.Dispose();
            ReleaseIfDone();
        }
    }

    private async Task<Metadata> GetHeadersAsync(Task<bool> started)
    {
        await started.ConfigureAwait(false);
        if (_response is null)
        {
            throw new RpcException(GetStatus(), GetTrailers());
        }

        var headers = ReadMetadata(_response.Headers, includeStatus: true);
        foreach (var (key, values) in _response.Content.Headers.NonValidated)
        {
            foreach (var value in values)
            {
                headers.Add(key, value);
            }
        }

        return headers;
    }

    /// <summary>Sends the request and reads the response headers; true when a body with messages follows.</summary>
    private async Task<bool> StartAsync(TRequest request)
    {
        try
        {
            var size = request.CalculateSize();
            if (size > _channel.MaxSendMessageSize)
            {
                throw new RpcException(new Status(StatusCode.ResourceExhausted, GrpcProtocol.SendTooLarge(size, _channel.MaxSendMessageSize.Value)));
            }

            using var message = CreateRequest(request, size);
            var response = await _channel.Invoker.SendAsync(message, _cts.Token).ConfigureAwait(false);
            lock (_sync)
            {
                if (_disposed)
                {
                    response.Dispose();
                    throw new OperationCanceledException(_cts.Token);
                }

                _response = response;
            }

            if (CheckHeaders(response) is { } status)
            {
                Finish(status, ReadMetadata(response.Headers, includeStatus: false));
                return false;
            }

            var stream = await response.Content.ReadAsStreamAsync(_cts.Token).ConfigureAwait(false);
            _reader = new FrameReader(stream, _channel.MaxReceiveMessageSize);
            return true;
        }
        catch (Exception ex)
        {
            Finish(StatusFromException(ex), ex is RpcException rpc ? rpc.Trailers : new Metadata());
            return false;
        }
    }

    private HttpRequestMessage CreateRequest(TRequest request, int size)
    {
        var message = new HttpRequestMessage(HttpMethod.Post, _channel.GetMethodUri(_method.FullName))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new GrpcRequestContent(request, size),
        };
        var headers = message.Headers;
        headers.TryAddWithoutValidation(GrpcProtocol.TeHeader, GrpcProtocol.TeTrailers);
        headers.TryAddWithoutValidation("User-Agent", UserAgent);
        headers.TryAddWithoutValidation(GrpcProtocol.AcceptEncodingHeader, GrpcProtocol.IdentityEncoding);
        if (_options.Deadline is { } deadline && deadline != DateTime.MaxValue)
        {
            var timeout = deadline.ToUniversalTime() - DateTime.UtcNow;
            if (timeout <= TimeSpan.Zero)
            {
                throw new RpcException(new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded"));
            }

            headers.TryAddWithoutValidation(GrpcProtocol.TimeoutHeader, GrpcTimeout.Format(timeout));
            if (timeout < s_maxTimer)
            {
                _cts.CancelAfter(timeout);
            }
        }

        if (_options.Headers is { } metadata)
        {
            foreach (var entry in metadata)
            {
                headers.TryAddWithoutValidation(entry.Key, entry.Value);
            }
        }

        return message;
    }

    /// <summary>The final status when the headers already end the call (trailers-only or not gRPC), else null.</summary>
    private static Status? CheckHeaders(HttpResponseMessage response)
    {
        if (GrpcProtocol.ReadStatus(GetHeader(response.Headers, GrpcProtocol.StatusHeader), GetHeader(response.Headers, GrpcProtocol.MessageHeader)) is { } status)
        {
            return status;
        }

        if (response.StatusCode != HttpStatusCode.OK)
        {
            return new Status(FromHttpStatus(response.StatusCode), $"Bad gRPC response. HTTP status code: {(int)response.StatusCode}");
        }

        var contentType = response.Content.Headers.ContentType?.MediaType;
        if (!GrpcProtocol.IsGrpcContentType(contentType))
        {
            return new Status(StatusCode.Internal, $"Bad gRPC response. Invalid content-type value: {contentType}");
        }

        return null;
    }

    /// <summary>The next message, or null at the end of a successful call; throws RpcException otherwise.</summary>
    private async Task<TResponse?> ReadNextAsync(CancellationToken cancellationToken)
    {
        lock (_sync)
        {
            _reading = true;
        }

        try
        {
            if (_started is not null && !await _started.ConfigureAwait(false))
            {
                return EndOfCall();
            }

            if (_status is not null)
            {
                return EndOfCall();
            }

            // Messages may already be buffered; a cancelled call must not keep returning them.
            _cts.Token.ThrowIfCancellationRequested();
            var reader = _reader!;
            if (await reader.ReadAsync(_cts.Token).ConfigureAwait(false))
            {
                try
                {
                    return _method.ResponseParser.ParseFrom(reader.Payload);
                }
                catch (InvalidProtocolBufferException ex)
                {
                    throw new RpcException(new Status(StatusCode.Internal, $"Failed to deserialize response message: {ex.Message}"));
                }
            }

            var trailers = _response!.TrailingHeaders;
            var status = GrpcProtocol.ReadStatus(GetHeader(trailers, GrpcProtocol.StatusHeader), GetHeader(trailers, GrpcProtocol.MessageHeader))
                ?? new Status(StatusCode.Internal, "The response ended without a grpc-status.");
            Finish(status, ReadMetadata(trailers, includeStatus: false));
            return EndOfCall();
        }
        catch (Exception ex) when (_status is null)
        {
            throw Fail(StatusFromException(ex), ex is RpcException rpc ? rpc.Trailers : new Metadata());
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            // The call already ended (disposed or cancelled meanwhile): report that status.
            throw new RpcException(_status!.Value, _trailers!);
        }
        finally
        {
            lock (_sync)
            {
                _reading = false;
                ReleaseIfDone();
            }
        }
    }

    private TResponse? EndOfCall()
    {
        var status = _status!.Value;
        return status.StatusCode == StatusCode.OK ? null : throw new RpcException(status, _trailers!);
    }

    private RpcException Fail(Status status, Metadata? trailers = null)
    {
        Finish(status, trailers ?? new Metadata());
        return new RpcException(status, _trailers!);
    }

    private void Finish(Status status, Metadata trailers)
    {
        lock (_sync)
        {
            if (_status is not null)
            {
                return;
            }

            _status = status;
            _trailers = trailers;
            ReleaseIfDone();
        }

        // A failed call resets its stream rather than leaving it open.
        if (status.StatusCode != StatusCode.OK)
        {
            _response?.Dispose();
        }
    }

    private void CancelByClient()
    {
        lock (_sync)
        {
            if (_status is null)
            {
                _cancelledByClient = true;
                _cts.Cancel();
            }
        }
    }

    /// <summary>Returns the pooled buffer and stops the deadline timer once the call has ended and no read is pending.</summary>
    private void ReleaseIfDone()
    {
        if (!_reading && _status is not null)
        {
            _reader?.Dispose();
            _cts.Dispose();
        }
    }

    private Status StatusFromException(Exception ex)
    {
        if (ex is RpcException rpc)
        {
            return rpc.Status;
        }

        if (_cts.IsCancellationRequested)
        {
            return _cancelledByClient || _options.CancellationToken.IsCancellationRequested
                ? new Status(StatusCode.Cancelled, "Call cancelled by the client.")
                : new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded");
        }

        var protocolError = ex as HttpProtocolException ?? ex.InnerException as HttpProtocolException;
        if (protocolError is not null)
        {
            return new Status(FromHttp2ErrorCode(protocolError.ErrorCode), $"HTTP/2 stream reset by the server: {protocolError.Message}");
        }

        return ex switch
        {
            HttpRequestException => new Status(StatusCode.Unavailable, $"Error connecting to the server: {ex.Message}"),
            IOException => new Status(StatusCode.Unavailable, $"Error reading from the server: {ex.Message}"),
            _ => new Status(StatusCode.Internal, $"Error in the gRPC call: {ex.GetType().Name}: {ex.Message}"),
        };
    }

    // Mapping from the gRPC over HTTP/2 spec.
    private static StatusCode FromHttp2ErrorCode(long code) => code switch
    {
        0x7 => StatusCode.Unavailable, // REFUSED_STREAM
        0x8 => StatusCode.Cancelled, // CANCEL
        0xB => StatusCode.ResourceExhausted, // ENHANCE_YOUR_CALM
        0xC => StatusCode.PermissionDenied, // INADEQUATE_SECURITY
        _ => StatusCode.Internal,
    };

    private static StatusCode FromHttpStatus(HttpStatusCode code) => code switch
    {
        HttpStatusCode.BadRequest => StatusCode.Internal,
        HttpStatusCode.Unauthorized => StatusCode.Unauthenticated,
        HttpStatusCode.Forbidden => StatusCode.PermissionDenied,
        HttpStatusCode.NotFound => StatusCode.Unimplemented,
        HttpStatusCode.TooManyRequests or HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout => StatusCode.Unavailable,
        _ => StatusCode.Unknown,
    };

    private static string? GetHeader(HttpHeaders headers, string name) =>
        headers.NonValidated.TryGetValues(name, out var values) ? values.ToString() : null;

    private static Metadata ReadMetadata(HttpHeaders headers, bool includeStatus)
    {
        var metadata = new Metadata();
        foreach (var (key, values) in headers.NonValidated)
        {
            if (!includeStatus && (key.Equals(GrpcProtocol.StatusHeader, StringComparison.OrdinalIgnoreCase) || key.Equals(GrpcProtocol.MessageHeader, StringComparison.OrdinalIgnoreCase)))
            {
                continue;
            }

            foreach (var value in values)
            {
                metadata.Add(key, value);
            }
        }

        return metadata;
    }
}
