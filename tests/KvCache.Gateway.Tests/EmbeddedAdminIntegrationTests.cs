using Grpc.Core;
using KvCache.Contracts.Admin.V1;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>The operator API in single-node (embedded) mode: it serves the one silo in the gateway's process.</summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class EmbeddedAdminIntegrationTests
{
    [Fact]
    public async Task The_admin_api_lists_the_one_silo_and_has_no_other_to_migrate_to()
    {
        await using var gateway = await InProcessGateway.StartAsync(new Dictionary<string, string?>
        {
            ["Models:DemoModelDirectory"] = Path.Combine(Path.GetTempPath(), "kvcache-gateway-test-models"),
            ["Silo:SiloName"] = "single",
        });
        using var channel = gateway.CreateChannel();
        var client = new KvCacheClient(channel);
        var admin = new AdminClient(channel);
        await client.CreateSessionAsync(new CreateSessionRequest { SessionId = "one" });
        await client.AppendAsync(new AppendRequest { SessionId = "one", TokenIds = { 1, 2, 3 } });

        var silo = (await admin.ListSilosAsync(new ListSilosRequest())).Silos.Single();
        Assert.Equal(("single", "Active", 1), (silo.Name, silo.Status, silo.ActiveSessions));
        Assert.True(silo.CacheBytesTotal > 0);

        var refused = await Assert.ThrowsAsync<RpcException>(() => admin.MigrateSessionAsync(new MigrateSessionRequest { SessionId = "one" }).ResponseAsync);
        Assert.Equal((StatusCode.Unavailable, "No other active silo can take the session."), (refused.StatusCode, refused.Status.Detail));
        Assert.Equal(3, (await client.GetSessionAsync(new GetSessionRequest { SessionId = "one" })).Position);
    }
}
