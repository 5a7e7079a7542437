using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Google.Protobuf;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace KvCache.Transport.Internal;

/// <summary>Runs one gRPC method's calls: validates the request, reads its one message, invokes the handler, sends the status.</summary>
internal sealed class ServerCallHandler<TRequest, TResponse>(
    Method<TRequest, TResponse> method,
    GrpcServerOptions options,
    ILogger logger)
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    public Task HandleUnaryAsync(HttpContext http, UnaryServerMethod<TRequest, TResponse> handler) =>
        HandleAsync(http, handler, static async (handler, request, context, self) =>
        {
            var response = await handler(request, context).ConfigureAwait(false)
                ?? throw new InvalidOperationException("The handler returned no response message.");

            // A late answer is not sent: the client has given up and will see DEADLINE_EXCEEDED.
            if (context.Status.StatusCode == StatusCode.OK && !context.DeadlineExceeded)
            {
                self.WriteMessage(context, response);
            }
        });

    public Task HandleServerStreamingAsync(HttpContext http, ServerStreamingServerMethod<TRequest, TResponse> handler) =>
        HandleAsync(http, handler, static (handler, request, context, self) =>
            handler(request, new ResponseStreamWriter(self, context), context));

    private async Task HandleAsync<THandler>(
        HttpContext http,
        THandler handler,
        Func<THandler, TRequest, HttpServerCallContext, ServerCallHandler<TRequest, TResponse>, Task> invoke)
    {
        if (!TryAcceptRequest(http))
        {
            return;
        }

        var response = http.Response;
        response.ContentType = GrpcProtocol.ContentType;
        response.Headers[GrpcProtocol.AcceptEncodingHeader] = GrpcProtocol.IdentityEncoding;

        // Our own per-message limit replaces Kestrel's whole-body limit.
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodySize)
        {
            bodySize.MaxRequestBodySize = null;
        }

        TimeSpan? timeout = null;
        var timeoutHeader = http.Request.Headers[GrpcProtocol.TimeoutHeader].ToString();
        if (timeoutHeader.Length > 0)
        {
            if (!GrpcTimeout.TryParse(timeoutHeader, out var parsed))
            {
                Reject(http, new Status(StatusCode.Internal, $"Invalid grpc-timeout value '{timeoutHeader}'."));
                return;
            }

            timeout = parsed;
        }

        using var context = new HttpServerCallContext(http, timeout);
        Status status;
        try
        {
            var request = await ReadRequestAsync(http, context.CancellationToken).ConfigureAwait(false);
            await invoke(handler, request, context, this).ConfigureAwait(false);
            status = context.DeadlineExceeded ? DeadlineStatus() : context.Status;
        }
        catch (Exception ex)
        {
            status = StatusFromException(ex, context);
        }

        // Kestrel sends the body and the trailers when the request delegate returns.
        context.Complete(status);
    }

    private Status DeadlineStatus()
    {
        TransportLog.DeadlineExceeded(logger, method.FullName);
        return new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded");
    }

    private Status StatusFromException(Exception ex, HttpServerCallContext context)
    {
        if (context.DeadlineExceeded)
        {
            return DeadlineStatus();
        }

        if (context.ClientAborted)
        {
            TransportLog.CallCancelled(logger, method.FullName);
            return new Status(StatusCode.Cancelled, "Call cancelled by the client.");
        }

        if (ex is RpcException rpc)
        {
            foreach (var entry in rpc.Trailers)
            {
                context.ResponseTrailers.Add(entry.Key, entry.Value);
            }

            return rpc.Status;
        }

        TransportLog.HandlerFailed(logger, method.FullName, ex);
        var detail = options.EnableDetailedErrors
            ? $"Exception was thrown by handler. {ex.GetType().Name}: {ex.Message}"
            : "Exception was thrown by handler.";
        return new Status(StatusCode.Unknown, detail);
    }

    private bool TryAcceptRequest(HttpContext http)
    {
        if (!HttpProtocol.IsHttp2(http.Request.Protocol))
        {
            http.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
            Reject(http, new Status(StatusCode.Internal, $"Request protocol '{http.Request.Protocol}' is not supported; gRPC needs HTTP/2."));
            return false;
        }

        if (!GrpcProtocol.IsGrpcContentType(http.Request.ContentType))
        {
            http.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            Reject(http, new Status(StatusCode.Internal, $"Content-Type '{http.Request.ContentType}' is not supported."));
            return false;
        }

        return true;
    }

    private void Reject(HttpContext http, Status status)
    {
        TransportLog.CallRejected(logger, method.FullName, status.StatusCode, status.Detail);
        GrpcProtocol.WriteTrailersOnly(http.Response, status);
    }

    /// <summary>Reads exactly one message and the end of the request stream.</summary>
    private async Task<TRequest> ReadRequestAsync(HttpContext http, CancellationToken cancellationToken)
    {
        var reader = http.Request.BodyReader;
        var result = await reader.ReadAtLeastAsync(GrpcProtocol.HeaderSize, cancellationToken).ConfigureAwait(false);
        var buffer = result.Buffer;
        if (buffer.IsEmpty)
        {
            throw Protocol(StatusCode.Internal, "Request did not contain a message.");
        }

        if (buffer.Length < GrpcProtocol.HeaderSize)
        {
            throw Protocol(StatusCode.Internal, "Incomplete message.");
        }

        var length = ReadHeader(http, buffer);
        var frameLength = GrpcProtocol.HeaderSize + length;
        if (buffer.Length < frameLength)
        {
            reader.AdvanceTo(buffer.Start, buffer.End);
            result = await reader.ReadAtLeastAsync(frameLength, cancellationToken).ConfigureAwait(false);
            buffer = result.Buffer;
            if (buffer.Length < frameLength)
            {
                throw Protocol(StatusCode.Internal, "Incomplete message.");
            }
        }

        TRequest request;
        try
        {
            request = method.RequestParser.ParseFrom(buffer.Slice(GrpcProtocol.HeaderSize, length));
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw Protocol(StatusCode.Internal, $"Error deserializing request message: {ex.Message}");
        }

        reader.AdvanceTo(buffer.GetPosition(frameLength));
        await ReadEndOfStreamAsync(reader, cancellationToken).ConfigureAwait(false);
        return request;
    }

    private int ReadHeader(HttpContext http, ReadOnlySequence<byte> buffer)
    {
        Span<byte> header = stackalloc byte[GrpcProtocol.HeaderSize];
        buffer.Slice(0, GrpcProtocol.HeaderSize).CopyTo(header);
        switch (header[0])
        {
            case 0:
                break;
            case 1:
                var encoding = http.Request.Headers[GrpcProtocol.EncodingHeader].ToString();
                throw encoding.Length == 0 || encoding == GrpcProtocol.IdentityEncoding
                    ? Protocol(StatusCode.Internal, "Request sent a compressed message without a grpc-encoding.")
                    : Protocol(StatusCode.Unimplemented, $"Unsupported grpc-encoding value '{encoding}'. Supported encodings: identity");
            default:
                throw Protocol(StatusCode.Internal, $"Unexpected compressed flag value {header[0]}.");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        if (length > (uint)options.MaxReceiveMessageSize)
        {
            throw Protocol(StatusCode.ResourceExhausted, GrpcProtocol.ReceiveTooLarge(length, options.MaxReceiveMessageSize));
        }

        return (int)length;
    }

    private static async Task ReadEndOfStreamAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (!result.Buffer.IsEmpty)
            {
                throw Protocol(StatusCode.Internal, "Additional data after the request message.");
            }

            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    private void WriteMessage(HttpServerCallContext context, TResponse message)
    {
        var size = message.CalculateSize();
        if (size > options.MaxSendMessageSize)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted, GrpcProtocol.SendTooLarge(size, options.MaxSendMessageSize)));
        }

        context.ResponseStarted = true;
        GrpcProtocol.WriteMessage(context.HttpContext.Response.BodyWriter, message, size);
    }

    private static RpcException Protocol(StatusCode code, string detail) => new(new Status(code, detail));

    private sealed class ResponseStreamWriter(ServerCallHandler<TRequest, TResponse> handler, HttpServerCallContext context)
        : IServerStreamWriter<TResponse>
    {
        private int _writing;

        public async Task WriteAsync(TResponse message, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(message);
            if (context.DeadlineExceeded)
            {
                throw new InvalidOperationException("Can't write the message because the deadline is exceeded.");
            }

            // Kestrel drops writes to a reset stream silently; fail so the handler stops producing.
            context.CancellationToken.ThrowIfCancellationRequested();
            if (Interlocked.Exchange(ref _writing, 1) != 0)
            {
                throw new InvalidOperationException("Can't write the message because the previous write is in progress.");
            }

            try
            {
                handler.WriteMessage(context, message);
                var flush = await context.HttpContext.Response.BodyWriter.FlushAsync(cancellationToken).ConfigureAwait(false);
                if (flush.IsCanceled)
                {
                    throw new OperationCanceledException(cancellationToken);
                }
            }
            finally
            {
                Volatile.Write(ref _writing, 0);
            }
        }
    }
}
