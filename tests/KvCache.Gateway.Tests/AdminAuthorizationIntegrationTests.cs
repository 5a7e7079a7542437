using Grpc.Core;
using KvCache.Contracts.Admin.V1;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// In a routed cluster, tenant keys reach no administrative call (PERMISSION_DENIED), so a tenant cannot migrate,
/// drain or list anything of another tenant; only an admin key can, and it moves the session intact.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class AdminAuthorizationIntegrationTests : IAsyncLifetime
{
    private const string TenantKey = "admin-test-tenant-key";
    private const string AdminKey = "admin-test-operator-key";
    private static readonly CallOptions Tenant = new(new Metadata { { "authorization", $"Bearer {TenantKey}" } });
    private static readonly CallOptions Operator = new(new Metadata { { "authorization", $"Bearer {AdminKey}" } });

    private ProcessCluster _cluster = null!;

    public async Task InitializeAsync() => _cluster = await ProcessCluster.StartAsync(
        silos: 2,
        [
            "--Auth:ApiKeys:0:Tenant=victim",
            $"--Auth:ApiKeys:0:Key={TenantKey}",
            "--Auth:ApiKeys:1:Tenant=operator",
            $"--Auth:ApiKeys:1:Key={AdminKey}",
            "--Auth:ApiKeys:1:Admin=true",
        ],
        gatewayHeaders: Operator.Headers);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Tenant_keys_are_refused_by_every_admin_call_and_an_admin_key_migrates_the_session_intact()
    {
        var client = _cluster.Gateway.Client;
        await client.CreateSessionAsync(new CreateSessionRequest { SessionId = "kept" }, Tenant);
        var append = new AppendRequest { SessionId = "kept" };
        append.TokenIds.AddRange(Enumerable.Range(1, 24));
        await client.AppendAsync(append, Tenant);
        var before = await client.GetSessionAsync(new GetSessionRequest { SessionId = "kept" }, Tenant);

        var admin = _cluster.Admin;
        var migrate = new MigrateSessionRequest { Tenant = "victim", SessionId = "kept" };
        await AssertCode(StatusCode.PermissionDenied, () => admin.MigrateSessionAsync(migrate, Tenant).ResponseAsync);
        await AssertCode(StatusCode.PermissionDenied, () => admin.ListSilosAsync(new ListSilosRequest(), Tenant).ResponseAsync);
        await AssertCode(StatusCode.PermissionDenied, () => admin.DrainSiloAsync(new DrainSiloRequest { Silo = before.OwnerSilo }, Tenant).ResponseAsync);
        await AssertCode(StatusCode.Unauthenticated, () => admin.MigrateSessionAsync(migrate, default(CallOptions)).ResponseAsync);

        var unchanged = await client.GetSessionAsync(new GetSessionRequest { SessionId = "kept" }, Tenant);
        Assert.Equal((before.OwnerSilo, before.Position), (unchanged.OwnerSilo, unchanged.Position));

        var moved = await admin.MigrateSessionAsync(migrate, Operator);
        var after = await client.GetSessionAsync(new GetSessionRequest { SessionId = "kept" }, Tenant);
        Assert.NotEqual(before.OwnerSilo, after.OwnerSilo);
        Assert.Equal(before.Position, after.Position);
        Assert.Equal(before.Position, moved.Position);
        Assert.Equal((before.OwnerSilo, after.OwnerSilo), (moved.FromSilo, moved.ToSilo));
    }

    private static async Task AssertCode(StatusCode code, Func<Task> call) =>
        Assert.Equal(code, (await Assert.ThrowsAsync<RpcException>(call)).StatusCode);
}
