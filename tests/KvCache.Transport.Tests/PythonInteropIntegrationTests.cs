using KvCache.Contracts.V1;
using KvCache.Testing.Python;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace KvCache.Transport.Tests;

/// <summary>Interop with a third-party gRPC client: python3-grpcio with stubs generated from the project's kvcache.proto.</summary>
public sealed class PythonInteropIntegrationTests : IClassFixture<PythonInteropIntegrationTests.Fixture>
{
    private const string NotFoundDetail = "séance « missing » не найдена 💾 100%";
    private const string AbortedDetail = "silo lost ownership ✗";
    private static readonly TimeSpan s_scriptTimeout = TimeSpan.FromSeconds(90);

    private readonly Fixture _fixture;

    public PythonInteropIntegrationTests(Fixture fixture) => _fixture = fixture;

    [Fact]
    public async Task Unary_CreateSession_WithMetadata()
    {
        var output = await RunAsync("unary");

        Assert.Contains("owner=Bearer py-key", output);
    }

    [Fact]
    public async Task ServerStreaming_Decode_DeliversAllEvents()
    {
        var output = await RunAsync("stream");

        Assert.Contains("events=500", output);
    }

    [Fact]
    public async Task ServerStreaming_ErrorAfterMessages_ArrivesAfterThem()
    {
        var output = await RunAsync("stream-error");

        Assert.Contains("received=[1, 2, 3]", output);
        Assert.Contains($"details={AbortedDetail}", output);
    }

    [Fact]
    public async Task Status_WithNonAsciiMessage_RoundTrips()
    {
        var output = await RunAsync("status");

        Assert.Contains($"details={NotFoundDetail}", output);
    }

    [Fact]
    public async Task Deadline_ClientGetsDeadlineExceeded_AndServerTokenFires()
    {
        var output = await RunAsync("deadline");

        Assert.Contains("deadline=ok", output);
        var serverDeadline = await _fixture.DeadlineSeen.Task.WaitAsync(s_scriptTimeout);
        Assert.NotEqual(DateTime.MaxValue, serverDeadline);
    }

    [Fact]
    public async Task UnmappedMethod_IsUnimplemented()
    {
        var output = await RunAsync("unimplemented");

        Assert.Contains("unimplemented=ok", output);
    }

    private async Task<string> RunAsync(string testCase)
    {
        var script = Path.Combine(AppContext.BaseDirectory, "Python", "kvcache_interop_client.py");
        var result = await PythonGrpc.RunScriptAsync(_fixture.Stubs, script, [_fixture.Server.HostPort, testCase], s_scriptTimeout);
        return result.StandardOutput;
    }

    /// <summary>One server with canned kvcache.v1 behaviour and one set of python stubs for all cases.</summary>
    public sealed class Fixture : IAsyncLifetime
    {
        private PythonStubs? _stubs;
        private TestGrpcServer? _server;

        public PythonStubs Stubs => _stubs!;

        internal TestGrpcServer Server => _server!;

        /// <summary>Completes with the deadline the server saw once the ListModels handler's token fired.</summary>
        public TaskCompletionSource<DateTime> DeadlineSeen { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public async Task InitializeAsync()
        {
            _stubs = await PythonGrpc.GenerateStubsAsync(Path.Combine(AppContext.BaseDirectory, "Protos"), "kvcache/v1/kvcache.proto");
            _server = await TestGrpcServer.StartAsync(MapCannedService);
        }

        public async Task DisposeAsync()
        {
            if (_server is not null)
            {
                await _server.DisposeAsync();
            }

            _stubs?.Dispose();
        }

        private void MapCannedService(Microsoft.AspNetCore.Routing.IEndpointRouteBuilder app)
        {
            app.MapGrpcUnary(KvCacheGrpc.CreateSessionMethod, (request, context) => Task.FromResult(new Session
            {
                Id = request.SessionId,
                Model = request.Model,
                Codec = request.Codec.Length == 0 ? "full" : request.Codec,
                State = SessionState.Active,
                OwnerSilo = context.RequestHeaders.GetValue("authorization") ?? string.Empty,
            }));
            app.MapGrpcServerStreaming(KvCacheGrpc.DecodeMethod, async (request, stream, _) =>
            {
                for (var i = 1; i <= request.MaxTokens; i++)
                {
                    if (request.SessionId == "fail-after-3" && i > 3)
                    {
                        throw new RpcException(new Status(StatusCode.Aborted, AbortedDetail));
                    }

                    await stream.WriteAsync(new DecodeEvent
                    {
                        TokenId = 100 + i,
                        Position = i,
                        Logprob = -0.5f,
                        FinishReason = i == request.MaxTokens ? FinishReason.MaxTokens : FinishReason.Unspecified,
                    });
                }
            });
            app.MapGrpcUnary<GetSessionRequest, Session>(KvCacheGrpc.GetSessionMethod, (_, _) =>
                throw new RpcException(new Status(StatusCode.NotFound, NotFoundDetail)));
            app.MapGrpcUnary(KvCacheGrpc.ListModelsMethod, async (_, context) =>
            {
                try
                {
                    await Task.Delay(Timeout.Infinite, context.CancellationToken);
                }
                finally
                {
                    DeadlineSeen.TrySetResult(context.Deadline);
                }

                return new ListModelsResponse();
            });
        }
    }
}
