using KvCache.Contracts.V1;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace KvCache.Transport.Tests;

/// <summary>The hand-written counterpart of Grpc.Tools' generated client, against the same method descriptors on the server.</summary>
public sealed class KvCacheClientUnitTests
{
    [Fact]
    public void MethodDescriptors_UseTheProtoServiceAndMethodNames()
    {
        Assert.Equal("/kvcache.v1.KvCache/CreateSession", KvCacheGrpc.CreateSessionMethod.FullName);
        Assert.Equal(MethodType.ServerStreaming, KvCacheGrpc.DecodeMethod.Type);
        Assert.Equal("/kvcache.v1.KvCache/ListModels", KvCacheGrpc.ListModelsMethod.FullName);
    }

    [Fact]
    public async Task Client_CallsUnaryAndStreamingMethods()
    {
        await using var server = await TestGrpcServer.StartAsync(app =>
        {
            app.MapGrpcUnary(KvCacheGrpc.CreateSessionMethod, (request, _) => Task.FromResult(new Session { Id = request.SessionId, Model = request.Model }));
            app.MapGrpcServerStreaming(KvCacheGrpc.DecodeMethod, async (request, stream, _) =>
            {
                for (var i = 1; i <= request.MaxTokens; i++)
                {
                    await stream.WriteAsync(new DecodeEvent { Position = i });
                }
            });
        });
        using var channel = server.CreateChannel();
        var client = new KvCacheGrpc.KvCacheClient(channel.CreateCallInvoker());

        var session = await client.CreateSessionAsync(new CreateSessionRequest { SessionId = "s-1", Model = "tiny" });
        using var decode = client.Decode(new DecodeRequest { SessionId = "s-1", MaxTokens = 4 });
        var positions = new List<long>();
        await foreach (var e in decode.ResponseStream.ReadAllAsync())
        {
            positions.Add(e.Position);
        }

        Assert.Equal(("s-1", "tiny"), (session.Id, session.Model));
        Assert.Equal([1L, 2, 3, 4], positions);
        var unmapped = await Assert.ThrowsAsync<RpcException>(() => client.ListModelsAsync(new ListModelsRequest()));
        Assert.Equal(StatusCode.Unimplemented, unmapped.StatusCode);
    }
}
