using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace KvCache.Transport.Tests;

/// <summary>Hand-made HTTP/2 requests against the server: framing, trailers-only shape, and bad input.</summary>
public sealed class GrpcWireUnitTests
{
    [Fact]
    public async Task Success_SendsOneFrameThenStatusInTrailers()
    {
        await using var server = await StartEchoServerAsync();
        using var client = server.CreateRawClient();

        var reply = await SendAsync(client, Frame(new StringValue { Value = "hi" }.ToByteArray()));

        Assert.Equal(HttpStatusCode.OK, reply.HttpStatus);
        Assert.Equal("application/grpc", reply.ContentType);
        Assert.Equal("identity", reply.Header("grpc-accept-encoding"));
        Assert.Null(reply.Header("grpc-status"));
        Assert.Equal("0", reply.Trailer("grpc-status"));
        Assert.Equal(Frame(new StringValue { Value = "hi" }.ToByteArray()), reply.Body);
    }

    [Fact]
    public async Task ErrorBeforeAnyMessage_IsTrailersOnly()
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (_, _) =>
            throw new RpcException(new Status(StatusCode.NotFound, "gone ✗"))));
        using var client = server.CreateRawClient();

        var reply = await SendAsync(client, Frame([]));

        Assert.Equal("5", reply.Header("grpc-status"));
        Assert.Equal("gone %E2%9C%97", reply.Header("grpc-message"));
        Assert.Empty(reply.Body);
        Assert.Null(reply.Trailer("grpc-status"));
    }

    [Theory]
    [InlineData(null, StatusCode.Internal)]
    [InlineData("gzip", StatusCode.Unimplemented)]
    public async Task CompressedFlag_IsRejected(string? encoding, StatusCode expected)
    {
        await using var server = await StartEchoServerAsync();
        using var client = server.CreateRawClient();

        var body = Frame(new StringValue { Value = "x" }.ToByteArray());
        body[0] = 1;
        var reply = await SendAsync(client, body, encoding);

        Assert.Equal(expected, reply.Status);
        Assert.Equal("identity", reply.Header("grpc-accept-encoding"));
    }

    public static TheoryData<string, byte[], StatusCode> BadRequests => new()
    {
        { "empty body", [], StatusCode.Internal },
        { "truncated header", [0, 0, 0], StatusCode.Internal },
        { "truncated message", [0, 0, 0, 0, 100, 10, 1, 2], StatusCode.Internal },
        { "garbage protobuf", [0, 0, 0, 0, 4, 0xFF, 0xFF, 0xFF, 0xFF], StatusCode.Internal },
        { "two messages", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], StatusCode.Internal },
        { "bad compressed flag", [7, 0, 0, 0, 0], StatusCode.Internal },
        // Only the 5-byte prefix is sent: the server must decide from it without waiting for 2 GiB.
        { "oversized prefix", [0, 0x7F, 0xFF, 0xFF, 0xFF], StatusCode.ResourceExhausted },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadRequestBody_GetsErrorStatus_AndServerKeepsServing(string name, byte[] body, StatusCode expected)
    {
        await using var server = await StartEchoServerAsync();
        using var client = server.CreateRawClient();

        var reply = await SendAsync(client, body);
        using var channel = server.CreateChannel();
        var after = await channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue { Value = name }, default);

        Assert.Equal(expected, reply.Status);
        Assert.Equal(name, after.Value);
    }

    [Fact]
    public async Task WrongContentType_Is415()
    {
        await using var server = await StartEchoServerAsync();
        using var client = server.CreateRawClient();

        var reply = await SendAsync(client, Frame([]), contentType: "application/json");

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, reply.HttpStatus);
        Assert.Equal(StatusCode.Internal, reply.Status);
    }

    [Fact]
    public async Task GrpcProtoContentType_IsAccepted()
    {
        await using var server = await StartEchoServerAsync();
        using var client = server.CreateRawClient();

        var reply = await SendAsync(client, Frame([]), contentType: "application/grpc+proto");

        Assert.Equal(StatusCode.OK, reply.Status);
    }

    [Fact]
    public async Task InvalidTimeoutHeader_IsInternal()
    {
        await using var server = await StartEchoServerAsync();
        using var client = server.CreateRawClient();

        var reply = await SendAsync(client, Frame([]), timeout: "12x");

        Assert.Equal(StatusCode.Internal, reply.Status);
    }

    [Fact]
    public async Task UnknownPath_IsTrailersOnlyUnimplemented()
    {
        await using var server = await StartEchoServerAsync();
        using var client = server.CreateRawClient();

        var reply = await SendAsync(client, Frame([]), path: "/no.Such/Method");

        Assert.Equal("12", reply.Header("grpc-status"));
        Assert.Empty(reply.Body);
    }

    private static Task<TestGrpcServer> StartEchoServerAsync() =>
        TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (request, _) => Task.FromResult(request)));

    private static byte[] Frame(byte[] payload)
    {
        var frame = new byte[5 + payload.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)payload.Length);
        payload.CopyTo(frame, 5);
        return frame;
    }

    private static async Task<Reply> SendAsync(
        HttpClient client,
        byte[] body,
        string? encoding = null,
        string contentType = "application/grpc",
        string? timeout = null,
        string? path = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path ?? TestMethods.Echo.FullName)
        {
            Content = new ByteArrayContent(body),
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        request.Headers.TryAddWithoutValidation("te", "trailers");
        if (encoding is not null)
        {
            request.Headers.TryAddWithoutValidation("grpc-encoding", encoding);
        }

        if (timeout is not null)
        {
            request.Headers.TryAddWithoutValidation("grpc-timeout", timeout);
        }

        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        return new Reply(
            response.StatusCode,
            response.Content.Headers.ContentType?.MediaType,
            bytes,
            response.Headers.ToDictionary(h => h.Key, h => string.Join(",", h.Value), StringComparer.OrdinalIgnoreCase),
            response.TrailingHeaders.ToDictionary(h => h.Key, h => string.Join(",", h.Value), StringComparer.OrdinalIgnoreCase));
    }

    private sealed record Reply(
        HttpStatusCode HttpStatus,
        string? ContentType,
        byte[] Body,
        Dictionary<string, string> Headers,
        Dictionary<string, string> Trailers)
    {
        public StatusCode Status => (StatusCode)int.Parse(Header("grpc-status") ?? Trailer("grpc-status") ?? "-1");

        public string? Header(string name) => Headers.GetValueOrDefault(name);

        public string? Trailer(string name) => Trailers.GetValueOrDefault(name);
    }
}
