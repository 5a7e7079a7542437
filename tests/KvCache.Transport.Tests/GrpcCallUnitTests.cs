using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Xunit;

namespace KvCache.Transport.Tests;

/// <summary>The client against the server over real HTTP/2 on loopback.</summary>
public sealed class GrpcCallUnitTests
{
    // Guards against hangs only; no test outcome depends on it.
    private static readonly TimeSpan s_hangGuard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Unary_RoundTrip_CarriesRequestHeadersAndPeer()
    {
        (string Peer, DateTime Deadline, string? Te) seen = default;
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (request, context) =>
        {
            seen = (context.Peer, context.Deadline, context.RequestHeaders.GetValue("te"));
            return Task.FromResult(new StringValue { Value = $"{request.Value}|{context.RequestHeaders.GetValue("X-Tenant")}" });
        }));
        using var channel = server.CreateChannel();

        var headers = new Metadata { { "x-tenant", "acme" } };
        var response = await channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue { Value = "hello" }, new CallOptions(headers));

        Assert.Equal("hello|acme", response.Value);
        Assert.StartsWith("ipv4:127.0.0.1:", seen.Peer);
        Assert.Equal(DateTime.MaxValue, seen.Deadline);
        Assert.Null(seen.Te);
    }

    [Fact]
    public async Task Unary_ManyConcurrentCalls_AllSucceed()
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (request, _) => Task.FromResult(request)));
        using var channel = server.CreateChannel();
        var invoker = channel.CreateCallInvoker();

        var responses = await Task.WhenAll(Enumerable.Range(0, 200).Select(i =>
            invoker.UnaryAsync(TestMethods.Echo, new StringValue { Value = i.ToString() }, default)));

        Assert.Equal(Enumerable.Range(0, 200).Select(i => i.ToString()), responses.Select(r => r.Value));
    }

    [Fact]
    public async Task ServerStreaming_DeliversManyMessagesInOrderThenTrailers()
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcServerStreaming(TestMethods.Count, async (request, stream, context) =>
        {
            for (var i = 0; i < request.Value; i++)
            {
                await stream.WriteAsync(new Int32Value { Value = i });
            }

            context.ResponseTrailers.Add("x-count", request.Value.ToString());
        }));
        using var channel = server.CreateChannel();

        using var call = channel.CreateCallInvoker().ServerStreaming(TestMethods.Count, new Int32Value { Value = 5000 }, default);
        var received = new List<int>();
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            received.Add(message.Value);
        }

        Assert.Equal(Enumerable.Range(0, 5000), received);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        Assert.Equal("5000", call.GetTrailers().GetValue("x-count"));
        Assert.Equal("application/grpc", (await call.ResponseHeadersAsync).GetValue("content-type"));
    }

    [Fact]
    public async Task ServerStreaming_StatusIsUnavailableUntilCompleted()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcServerStreaming(TestMethods.Count, async (_, stream, _) =>
        {
            await stream.WriteAsync(new Int32Value { Value = 1 });
            await release.Task;
        }));
        using var channel = server.CreateChannel();

        using var call = channel.CreateCallInvoker().ServerStreaming(TestMethods.Count, new Int32Value(), default);
        Assert.True(await call.ResponseStream.MoveNext());

        Assert.Throws<InvalidOperationException>(() => call.GetStatus());
        Assert.Throws<InvalidOperationException>(() => call.GetTrailers());
        release.SetResult();
        Assert.False(await call.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task Unary_RpcException_ReachesClientWithStatusAndTrailers()
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (_, _) =>
            throw new RpcException(new Status(StatusCode.NotFound, "no such session"), new Metadata { { "x-why", "gone" } })));
        using var channel = server.CreateChannel();

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue(), default));

        Assert.Equal(StatusCode.NotFound, error.StatusCode);
        Assert.Equal("no such session", error.Status.Detail);
        Assert.Equal("gone", error.Trailers.GetValue("x-why"));
    }

    [Fact]
    public async Task Unary_StatusSetOnContext_IsSentInsteadOfTheResponse()
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (request, context) =>
        {
            context.Status = new Status(StatusCode.FailedPrecondition, "session is draining");
            return Task.FromResult(request);
        }));
        using var channel = server.CreateChannel();

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue(), default));

        Assert.Equal(new Status(StatusCode.FailedPrecondition, "session is draining"), error.Status);
    }

    [Fact]
    public async Task ServerStreaming_ErrorAfterMessages_ArrivesAfterTheMessages()
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcServerStreaming(TestMethods.Count, async (_, stream, _) =>
        {
            for (var i = 0; i < 3; i++)
            {
                await stream.WriteAsync(new Int32Value { Value = i });
            }

            throw new RpcException(new Status(StatusCode.Aborted, "silo lost ownership"));
        }));
        using var channel = server.CreateChannel();

        using var call = channel.CreateCallInvoker().ServerStreaming(TestMethods.Count, new Int32Value(), default);
        var received = new List<int>();
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var message in call.ResponseStream.ReadAllAsync())
            {
                received.Add(message.Value);
            }
        });

        Assert.Equal([0, 1, 2], received);
        Assert.Equal(new Status(StatusCode.Aborted, "silo lost ownership"), error.Status);
        Assert.Equal(error.Status, call.GetStatus());
    }

    [Theory]
    [InlineData("séance 💾 не найдена")]
    [InlineData("100% done\r\nnext line\ttab")]
    [InlineData("%41 is not an escape here")]
    public async Task StatusDetail_WithNonAsciiAndPercent_RoundTripsExactly(string detail)
    {
        await using var server = await TestGrpcServer.StartAsync(app =>
        {
            app.MapGrpcUnary(TestMethods.Echo, (_, _) => throw new RpcException(new Status(StatusCode.InvalidArgument, detail)));
            app.MapGrpcServerStreaming(TestMethods.Count, async (_, stream, _) =>
            {
                await stream.WriteAsync(new Int32Value());
                throw new RpcException(new Status(StatusCode.InvalidArgument, detail));
            });
        });
        using var channel = server.CreateChannel();
        var invoker = channel.CreateCallInvoker();

        var trailersOnly = await Assert.ThrowsAsync<RpcException>(() => invoker.UnaryAsync(TestMethods.Echo, new StringValue(), default));
        using var call = invoker.ServerStreaming(TestMethods.Count, new Int32Value(), default);
        Assert.True(await call.ResponseStream.MoveNext());
        var afterMessages = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext());

        Assert.Equal(detail, trailersOnly.Status.Detail);
        Assert.Equal(detail, afterMessages.Status.Detail);
    }

    [Theory]
    [InlineData(false, "Exception was thrown by handler.")]
    [InlineData(true, "Exception was thrown by handler. InvalidOperationException: secret state")]
    public async Task UnexpectedException_IsUnknown_WithDetailOnlyWhenEnabled(bool detailed, string expected)
    {
        await using var server = await TestGrpcServer.StartAsync(
            app => app.MapGrpcUnary(TestMethods.Echo, (_, _) => throw new InvalidOperationException("secret state")),
            options => options.EnableDetailedErrors = detailed);
        using var channel = server.CreateChannel();

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue(), default));

        Assert.Equal(new Status(StatusCode.Unknown, expected), error.Status);
    }

    [Fact]
    public async Task Deadline_Unary_ServerTokenFiresAndClientGetsDeadlineExceeded()
    {
        var serverSaw = new TaskCompletionSource<DateTime>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, async (request, context) =>
        {
            try
            {
                await Task.Delay(Timeout.Infinite, context.CancellationToken);
            }
            finally
            {
                serverSaw.SetResult(context.Deadline);
            }

            return request;
        }));
        using var channel = server.CreateChannel();

        var deadline = DateTime.UtcNow.AddSeconds(2);
        var error = await Assert.ThrowsAsync<RpcException>(() =>
            channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue(), new CallOptions(Deadline: deadline)));

        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        var serverDeadline = await serverSaw.Task.WaitAsync(s_hangGuard);
        Assert.NotEqual(DateTime.MaxValue, serverDeadline);
    }

    [Fact]
    public async Task Deadline_MidStream_ServerTokenFiresAndClientGetsDeadlineExceeded()
    {
        var serverCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcServerStreaming(TestMethods.Count, async (_, stream, context) =>
        {
            await stream.WriteAsync(new Int32Value { Value = 7 });
            using var registration = context.CancellationToken.Register(serverCancelled.SetResult);
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }));
        using var channel = server.CreateChannel();

        using var call = channel.CreateCallInvoker().ServerStreaming(TestMethods.Count, new Int32Value(), new CallOptions(Deadline: DateTime.UtcNow.AddSeconds(2)));
        Assert.True(await call.ResponseStream.MoveNext());
        var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext());

        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        Assert.Equal(StatusCode.DeadlineExceeded, call.GetStatus().StatusCode);
        await serverCancelled.Task.WaitAsync(s_hangGuard);
    }

    [Fact]
    public async Task Deadline_AlreadyPassed_FailsWithoutCallingTheServer()
    {
        var calls = 0;
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (request, _) =>
        {
            Interlocked.Increment(ref calls);
            return Task.FromResult(request);
        }));
        using var channel = server.CreateChannel();

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue(), new CallOptions(Deadline: DateTime.UtcNow.AddSeconds(-1))));

        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        Assert.Equal(0, calls);
    }

    [Fact]
    public async Task Cancellation_MidStream_ClientGetsCancelledAndServerTokenFires()
    {
        var serverCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcServerStreaming(TestMethods.Count, async (_, stream, context) =>
        {
            using var registration = context.CancellationToken.Register(serverCancelled.SetResult);
            for (var i = 0; ; i++)
            {
                await stream.WriteAsync(new Int32Value { Value = i }, context.CancellationToken);
            }
        }));
        using var channel = server.CreateChannel();
        using var cts = new CancellationTokenSource();

        using var call = channel.CreateCallInvoker().ServerStreaming(TestMethods.Count, new Int32Value(), new CallOptions(CancellationToken: cts.Token));
        for (var i = 0; i < 5; i++)
        {
            Assert.True(await call.ResponseStream.MoveNext());
            Assert.Equal(i, call.ResponseStream.Current.Value);
        }

        cts.Cancel();
        var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext());

        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
        await serverCancelled.Task.WaitAsync(s_hangGuard);
    }

    [Fact]
    public async Task Cancellation_OfMoveNextToken_CancelsTheCall()
    {
        var serverCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcServerStreaming(TestMethods.Count, async (_, stream, context) =>
        {
            using var registration = context.CancellationToken.Register(serverCancelled.SetResult);
            await stream.WriteAsync(new Int32Value());
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }));
        using var channel = server.CreateChannel();
        using var cts = new CancellationTokenSource();

        using var call = channel.CreateCallInvoker().ServerStreaming(TestMethods.Count, new Int32Value(), default);
        Assert.True(await call.ResponseStream.MoveNext());
        var pending = call.ResponseStream.MoveNext(cts.Token);
        cts.Cancel();
        var error = await Assert.ThrowsAsync<RpcException>(() => pending);

        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
        await serverCancelled.Task.WaitAsync(s_hangGuard);
    }

    [Fact]
    public async Task Dispose_MidStream_ResetsTheStreamAndServerTokenFires()
    {
        var serverCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcServerStreaming(TestMethods.Count, async (_, stream, context) =>
        {
            using var registration = context.CancellationToken.Register(serverCancelled.SetResult);
            await stream.WriteAsync(new Int32Value());
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }));
        using var channel = server.CreateChannel();

        var call = channel.CreateCallInvoker().ServerStreaming(TestMethods.Count, new Int32Value(), default);
        Assert.True(await call.ResponseStream.MoveNext());
        call.Dispose();

        await serverCancelled.Task.WaitAsync(s_hangGuard);
        Assert.Equal(StatusCode.Cancelled, call.GetStatus().StatusCode);
        var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
    }

    [Fact]
    public async Task MaxReceive_OnServer_RejectsLargeRequestWithResourceExhausted()
    {
        var calls = 0;
        await using var server = await TestGrpcServer.StartAsync(
            app => app.MapGrpcUnary(TestMethods.Echo, (request, _) =>
            {
                Interlocked.Increment(ref calls);
                return Task.FromResult(request);
            }),
            options => options.MaxReceiveMessageSize = 1024);
        using var channel = server.CreateChannel();
        var invoker = channel.CreateCallInvoker();

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            invoker.UnaryAsync(TestMethods.Echo, new StringValue { Value = new string('x', 2000) }, default));
        var small = await invoker.UnaryAsync(TestMethods.Echo, new StringValue { Value = new string('x', 1000) }, default);

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.Equal(1000, small.Value.Length);
        Assert.Equal(1, calls);
    }

    [Fact]
    public async Task MaxSend_OnServer_FailsWithResourceExhausted()
    {
        await using var server = await TestGrpcServer.StartAsync(MapPayload, options => options.MaxSendMessageSize = 1024);
        using var channel = server.CreateChannel();

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            channel.CreateCallInvoker().UnaryAsync(TestMethods.Payload, new Int32Value { Value = 2000 }, default));

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
    }

    [Fact]
    public async Task MaxReceive_OnClient_RejectsLargeResponseWithResourceExhausted()
    {
        await using var server = await TestGrpcServer.StartAsync(MapPayload);
        using var channel = server.CreateChannel(new GrpcChannelOptions { MaxReceiveMessageSize = 1024 });
        var invoker = channel.CreateCallInvoker();

        var error = await Assert.ThrowsAsync<RpcException>(() => invoker.UnaryAsync(TestMethods.Payload, new Int32Value { Value = 2000 }, default));
        var small = await invoker.UnaryAsync(TestMethods.Payload, new Int32Value { Value = 1000 }, default);

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.Equal(1000, small.Value.Length);
    }

    [Fact]
    public async Task MaxSend_OnClient_FailsBeforeSending()
    {
        var calls = 0;
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (request, _) =>
        {
            Interlocked.Increment(ref calls);
            return Task.FromResult(request);
        }));
        using var channel = server.CreateChannel(new GrpcChannelOptions { MaxSendMessageSize = 100 });

        var error = await Assert.ThrowsAsync<RpcException>(() =>
            channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue { Value = new string('x', 200) }, default));

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.Equal(0, calls);
    }

    [Fact]
    public async Task LargeMessages_UnderTheDefaultLimit_RoundTripBothWays()
    {
        const int size = 3 * 1024 * 1024;
        await using var server = await TestGrpcServer.StartAsync(app =>
        {
            MapPayload(app);
            app.MapGrpcUnary(TestMethods.Echo, (request, _) => Task.FromResult(new StringValue { Value = request.Value.Length.ToString() }));
        });
        using var channel = server.CreateChannel();
        var invoker = channel.CreateCallInvoker();

        var download = await invoker.UnaryAsync(TestMethods.Payload, new Int32Value { Value = size }, default);
        var upload = await invoker.UnaryAsync(TestMethods.Echo, new StringValue { Value = new string('y', size) }, default);
        var tooLarge = await Assert.ThrowsAsync<RpcException>(() =>
            invoker.UnaryAsync(TestMethods.Payload, new Int32Value { Value = 4 * 1024 * 1024 }, default));

        Assert.Equal(size, download.Value.Length);
        Assert.True(download.Value.Span.IndexOfAnyExcept((byte)0xAB) < 0);
        Assert.Equal(size.ToString(), upload.Value);
        Assert.Equal(StatusCode.ResourceExhausted, tooLarge.StatusCode);
    }

    [Fact]
    public async Task UnknownMethod_IsUnimplemented()
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapGrpcUnary(TestMethods.Echo, (request, _) => Task.FromResult(request)));
        using var channel = server.CreateChannel();
        var unknownMethod = new Method<StringValue, StringValue>(MethodType.Unary, "test.v1.Test", "Missing", StringValue.Parser, StringValue.Parser);
        var unknownService = new Method<StringValue, StringValue>(MethodType.Unary, "nope.v1.Nope", "Echo", StringValue.Parser, StringValue.Parser);

        var method = await Assert.ThrowsAsync<RpcException>(() => channel.CreateCallInvoker().UnaryAsync(unknownMethod, new StringValue(), default));
        var service = await Assert.ThrowsAsync<RpcException>(() => channel.CreateCallInvoker().UnaryAsync(unknownService, new StringValue(), default));

        Assert.Equal(StatusCode.Unimplemented, method.StatusCode);
        Assert.Equal(StatusCode.Unimplemented, service.StatusCode);
    }

    [Fact]
    public async Task ConnectionRefused_IsUnavailable()
    {
        // A port that was just free and has no listener now.
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        using var channel = GrpcChannel.ForAddress(new Uri($"http://127.0.0.1:{port}"));

        var unary = await Assert.ThrowsAsync<RpcException>(() => channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue(), default));
        using var call = channel.CreateCallInvoker().ServerStreaming(TestMethods.Count, new Int32Value(), default);
        var headers = await Assert.ThrowsAsync<RpcException>(() => call.ResponseHeadersAsync);

        Assert.Equal(StatusCode.Unavailable, unary.StatusCode);
        Assert.Equal(StatusCode.Unavailable, headers.StatusCode);
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("garbage")]
    [InlineData("compressed")]
    [InlineData("no-status")]
    [InlineData("not-grpc")]
    public async Task MalformedResponse_IsInternal(string kind)
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapPost(TestMethods.Echo.FullName, async context =>
        {
            context.Response.ContentType = kind == "not-grpc" ? "text/plain" : "application/grpc";
            byte[] body = kind switch
            {
                "truncated" => [0, 0, 0, 0, 10, 1, 2],
                "garbage" => [0, 0, 0, 0, 4, 0xFF, 0xFF, 0xFF, 0xFF],
                "compressed" => [1, 0, 0, 0, 1, 0],
                _ => [0, 0, 0, 0, 0],
            };
            await context.Response.Body.WriteAsync(body);
            if (kind is "truncated" or "garbage" or "compressed")
            {
                context.Response.AppendTrailer("grpc-status", "0");
            }
        }));
        using var channel = server.CreateChannel();

        var error = await Assert.ThrowsAsync<RpcException>(() => channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue(), default));

        Assert.Equal(StatusCode.Internal, error.StatusCode);
    }

    [Fact]
    public async Task UnaryResponse_WithTwoMessages_IsInternal()
    {
        await using var server = await TestGrpcServer.StartAsync(app => app.MapPost(TestMethods.Echo.FullName, async context =>
        {
            context.Response.ContentType = "application/grpc";
            await context.Response.Body.WriteAsync(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 });
            context.Response.AppendTrailer("grpc-status", "0");
        }));
        using var channel = server.CreateChannel();

        var error = await Assert.ThrowsAsync<RpcException>(() => channel.CreateCallInvoker().UnaryAsync(TestMethods.Echo, new StringValue(), default));

        Assert.Equal(StatusCode.Internal, error.StatusCode);
    }

    private static void MapPayload(IEndpointRouteBuilder app) => app.MapGrpcUnary(TestMethods.Payload, (request, _) =>
    {
        var bytes = new byte[request.Value];
        bytes.AsSpan().Fill(0xAB);
        return Task.FromResult(new BytesValue { Value = ByteString.CopyFrom(bytes) });
    });
}
