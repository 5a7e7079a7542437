using KvCache.Silo.Placement;
using KvCache.Silo.Tests.Storage;
using StackExchange.Redis;
using Xunit;

namespace KvCache.Silo.Tests.Placement;

public sealed class RedisSiloLoadTableIntegrationTests : SiloLoadTableContract, IClassFixture<SiloRedisFixture>, IAsyncLifetime
{
    private readonly string _endpoint;
    private ConnectionMultiplexer? _redis;
    private ISiloLoadTable? _table;

    public RedisSiloLoadTableIntegrationTests(SiloRedisFixture redis) => _endpoint = redis.Endpoint;

    protected override ISiloLoadTable Table => _table ?? throw new InvalidOperationException("Not initialized.");

    public async Task InitializeAsync()
    {
        _redis = await ConnectionMultiplexer.ConnectAsync(_endpoint);
        _table = new RedisSiloLoadTable(_redis, "loads" + Guid.NewGuid().ToString("N")[..8]);
    }

    [Fact]
    public async Task A_field_it_cannot_read_is_skipped_and_the_rest_still_read()
    {
        var prefix = "garbled" + Guid.NewGuid().ToString("N")[..8];
        var table = new RedisSiloLoadTable(_redis!, prefix);
        var a = Orleans.Runtime.SiloAddress.New(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 11111), 3);
        await table.PublishAsync(new SiloLoad(a, "silo-a", 1, 1, 2, false, DateTimeOffset.UnixEpoch), default);
        await _redis!.GetDatabase().HashSetAsync($"{prefix}:silo-loads", "not-an-address", "{not json");

        var loads = await table.ReadAllAsync(default);

        Assert.Equal("silo-a", Assert.Single(loads).Name);
    }

    public async Task DisposeAsync()
    {
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }
}
