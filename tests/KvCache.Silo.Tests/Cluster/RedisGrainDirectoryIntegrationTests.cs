using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Storage.Redis;
using KvCache.Silo.Tests.Storage;
using Microsoft.Extensions.Options;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

public sealed class RedisGrainDirectoryIntegrationTests(SiloRedisFixture redis) : GrainDirectoryContract, IClassFixture<SiloRedisFixture>, IAsyncLifetime
{
    private readonly RedisSessionStore _store = new(Options.Create(new RedisStoreOptions { Endpoint = redis.Endpoint }));

    protected override IGrainDirectory Directory => _store.Directory;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _store.DisposeAsync();
}
