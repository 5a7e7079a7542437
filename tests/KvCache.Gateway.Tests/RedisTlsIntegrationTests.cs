using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.Testing.Redis;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// The single-node service as a process on a TLS-only redis-server whose certificate comes from a private CA, trusted
/// through <c>Spill:Redis:TlsCaCertificate</c>: Orleans' Redis membership and grain directory and the spill store all
/// connect over TLS, and a session spilled when the process stops resumes after it starts again.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class RedisTlsIntegrationTests : IAsyncLifetime
{
    private const string Password = "gateway-tls-redis-pw-0123";
    private static readonly int[] Prompt = [.. Enumerable.Range(0, 32).Select(i => (i * 41 + 5) % 509)];

    private RedisServer _redis = null!;

    public async Task InitializeAsync() =>
        _redis = await RedisServer.StartAsync(new RedisServerOptions
        {
            FirstPort = TestPorts.Redis.FirstPort,
            LastPort = TestPorts.Redis.LastPort,
            Password = Password,
            Tls = true,
        });

    public async Task DisposeAsync() => await _redis.DisposeAsync();

    [Fact]
    public async Task A_session_resumes_after_a_restart_through_a_tls_redis_trusted_by_its_ca()
    {
        await using var gateway = new GatewayProcess(
            GatewayProcess.FreePort(),
            $"--Spill:Redis:Endpoint={_redis.Endpoint}",
            $"--Spill:Redis:Password={Password}",
            "--Spill:Redis:UseTls=true",
            $"--Spill:Redis:TlsCaCertificate={_redis.Tls!.CaCertificate}",
            "--Silo:SiloName=silo-tls");
        await gateway.StartAsync();
        var client = gateway.Client;
        var expected = await CreateAndDecodeAsync(client, "twin", 12);
        var head = await CreateAndDecodeAsync(client, "resumed", 5);

        await gateway.StopAsync();
        await gateway.StartAsync();

        Assert.Equal(SessionState.Spilled, (await client.GetSessionAsync(new GetSessionRequest { SessionId = "resumed" })).State);
        var tail = await DecodeCalls.GreedyTokensAsync(client, "resumed", 7);
        Assert.Equal(expected, head.Concat(tail));
        string connected = "trusting the system's roots and " + _redis.Tls.CaCertificate;
        Assert.True(await gateway.PrintedAsync(connected), $"'{connected}' not in the log:\n{gateway.Output}");
        Assert.DoesNotContain(Password, gateway.Output, StringComparison.Ordinal);
    }

    private static async Task<int[]> CreateAndDecodeAsync(KvCacheClient client, string sessionId, int tokens)
    {
        await client.CreateSessionAsync(new CreateSessionRequest { SessionId = sessionId });
        await client.AppendAsync(new AppendRequest { SessionId = sessionId, TokenIds = { Prompt } });
        return await DecodeCalls.GreedyTokensAsync(client, sessionId, tokens);
    }
}
