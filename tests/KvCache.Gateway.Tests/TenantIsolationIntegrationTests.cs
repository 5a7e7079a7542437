using Grpc.Core;
using Grpc.Net.Client;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// Tenant B reaches none of tenant A's sessions through any public call: NOT_FOUND every time, never A's data,
/// and A's session is unchanged afterwards.
/// </summary>
public sealed class TenantIsolationIntegrationTests : IAsyncLifetime
{
    private const string KeyA = "isolation-key-a";
    private const string KeyB = "isolation-key-b";
    private static readonly CallOptions A = new(new Metadata { { "authorization", $"Bearer {KeyA}" } });
    private static readonly CallOptions B = new(new Metadata { { "authorization", $"Bearer {KeyB}" } });

    private InProcessGateway _gateway = null!;
    private GrpcChannel _channel = null!;
    private KvCacheClient _client = null!;

    public async Task InitializeAsync()
    {
        _gateway = await InProcessGateway.StartAsync(new Dictionary<string, string?>
        {
            ["Auth:ApiKeys:0:Tenant"] = "tenant-a",
            ["Auth:ApiKeys:0:Key"] = KeyA,
            ["Auth:ApiKeys:1:Tenant"] = "tenant-b",
            ["Auth:ApiKeys:1:Key"] = KeyB,
            ["Models:DemoModelDirectory"] = Path.Combine(Path.GetTempPath(), "kvcache-gateway-test-models"),
            ["Silo:SiloName"] = "isolation-silo",
        });
        _channel = _gateway.CreateChannel();
        _client = new KvCacheClient(_channel);
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        await _gateway.DisposeAsync();
    }

    [Fact]
    public async Task Another_tenant_gets_not_found_from_every_call_and_the_session_is_unchanged()
    {
        const string id = "private-conversation";
        await _client.CreateSessionAsync(new CreateSessionRequest { SessionId = id }, A);
        var append = new AppendRequest { SessionId = id };
        append.TokenIds.AddRange(Enumerable.Range(1, 40));
        await _client.AppendAsync(append, A);
        var before = await _client.GetSessionAsync(new GetSessionRequest { SessionId = id }, A);
        Assert.Equal("isolation-silo", before.OwnerSilo);

        await AssertNotFound(() => _client.GetSessionAsync(new GetSessionRequest { SessionId = id }, B).ResponseAsync);
        await AssertNotFound(() => _client.AppendAsync(append, B).ResponseAsync);
        await AssertNotFound(async () =>
        {
            using var call = _client.Decode(new DecodeRequest { SessionId = id, MaxTokens = 4 }, B);
            while (await call.ResponseStream.MoveNext())
            {
                Assert.Fail("tenant B received a token of tenant A's session");
            }
        });
        await AssertNotFound(() => _client.SpillSessionAsync(new SpillSessionRequest { SessionId = id }, B).ResponseAsync);
        await AssertNotFound(() => _client.DeleteSessionAsync(new DeleteSessionRequest { SessionId = id }, B).ResponseAsync);
        Assert.Empty((await _client.ListSessionsAsync(new ListSessionsRequest(), B)).Sessions);

        // B may use the same id for a session of its own: a separate session, not A's.
        var own = await _client.CreateSessionAsync(new CreateSessionRequest { SessionId = id }, B);
        Assert.Equal(0, own.Position);
        Assert.Equal(new[] { id }, (await _client.ListSessionsAsync(new ListSessionsRequest(), B)).Sessions.Select(s => s.Id));

        var after = await _client.GetSessionAsync(new GetSessionRequest { SessionId = id }, A);
        Assert.Equal(before.Position, after.Position);
        Assert.Equal(before.CacheBytes, after.CacheBytes);
        Assert.Equal(new[] { id }, (await _client.ListSessionsAsync(new ListSessionsRequest(), A)).Sessions.Select(s => s.Id));
    }

    private static async Task AssertNotFound(Func<Task> call)
    {
        var error = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(StatusCode.NotFound, error.StatusCode);
    }
}
