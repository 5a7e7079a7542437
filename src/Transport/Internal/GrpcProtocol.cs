using System.Buffers;
using System.Buffers.Binary;
using Google.Protobuf;
using Microsoft.AspNetCore.Http;

namespace KvCache.Transport.Internal;

/// <summary>Header names and message framing shared by client and server (gRPC over HTTP/2 spec).</summary>
internal static class GrpcProtocol
{
    public const string ContentType = "application/grpc";
    public const string StatusHeader = "grpc-status";
    public const string MessageHeader = "grpc-message";
    public const string TimeoutHeader = "grpc-timeout";
    public const string EncodingHeader = "grpc-encoding";
    public const string AcceptEncodingHeader = "grpc-accept-encoding";
    public const string IdentityEncoding = "identity";
    public const string TeHeader = "te";
    public const string TeTrailers = "trailers";

    /// <summary>Compressed flag (1 byte) + big-endian message length (4 bytes).</summary>
    public const int HeaderSize = 5;

    /// <summary>True for "application/grpc" and "application/grpc+proto" (parameters allowed), not "+json".</summary>
    public static bool IsGrpcContentType(string? contentType)
    {
        if (contentType is null || !contentType.StartsWith(ContentType, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var rest = contentType.AsSpan(ContentType.Length);
        var end = rest.IndexOf(';');
        if (end >= 0)
        {
            rest = rest[..end];
        }

        rest = rest.Trim();
        return rest.IsEmpty || rest.Equals("+proto", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Writes one length-prefixed, uncompressed message; the caller has checked the size limit.</summary>
    public static void WriteMessage(IBufferWriter<byte> writer, IMessage message, int size)
    {
        var span = writer.GetSpan(HeaderSize + size);
        span[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(span[1..], (uint)size);
        message.WriteTo(span.Slice(HeaderSize, size));
        writer.Advance(HeaderSize + size);
    }

    public static void WriteMessage(Span<byte> destination, IMessage message, int size)
    {
        destination[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[1..], (uint)size);
        message.WriteTo(destination.Slice(HeaderSize, size));
    }

    public static string ReceiveTooLarge(long length, int limit) =>
        $"Received message exceeds the maximum configured message size ({length} > {limit}).";

    public static string SendTooLarge(int length, int limit) =>
        $"Sending message exceeds the maximum configured message size ({length} > {limit}).";

    public static string FormatStatusCode(StatusCode code) =>
        ((int)code).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Ends a response that has sent no message: the status goes in the headers and there is no body.</summary>
    public static void WriteTrailersOnly(HttpResponse response, Status status)
    {
        response.ContentType = ContentType;
        response.Headers[StatusHeader] = FormatStatusCode(status.StatusCode);
        if (!string.IsNullOrEmpty(status.Detail))
        {
            response.Headers[MessageHeader] = PercentEncoding.Encode(status.Detail);
        }
    }

    /// <summary>Reads grpc-status / grpc-message from a header source; null when grpc-status is absent.</summary>
    public static Status? ReadStatus(string? statusValue, string? messageValue)
    {
        if (statusValue is null)
        {
            return null;
        }

        if (!int.TryParse(statusValue, System.Globalization.NumberStyles.None, null, out var code))
        {
            return new Status(StatusCode.Internal, $"Unexpected grpc-status value '{statusValue}'.");
        }

        var detail = messageValue is null ? string.Empty : PercentEncoding.Decode(messageValue);
        return new Status((StatusCode)code, detail);
    }
}
