using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Tests.Storage;
using Microsoft.Extensions.Options;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

public sealed class RedisMembershipTableIntegrationTests(SiloRedisFixture redis) : MembershipTableContract, IClassFixture<SiloRedisFixture>, IAsyncLifetime
{
    // Each test its own cluster id, so they share one redis-server.
    private readonly RedisMembershipTable _table = new(Options.Create(new RedisMembershipOptions
    {
        Endpoint = redis.Endpoint,
        ClusterId = "c" + Guid.NewGuid().ToString("N")[..12],
    }));

    protected override IMembershipTable Table => _table;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _table.DisposeAsync();
}
