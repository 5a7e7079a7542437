using System.Net;
using KvCache.Silo.Placement;
using Orleans.Runtime;
using Xunit;

namespace KvCache.Silo.Tests.Placement;

/// <summary>What placement relies on from every <see cref="ISiloLoadTable"/>: a silo's latest load replaces its last, and a removed silo is gone.</summary>
public abstract class SiloLoadTableContract
{
    protected abstract ISiloLoadTable Table { get; }

    [Fact]
    public async Task The_latest_load_of_each_silo_is_read_back_whole()
    {
        var a = SiloAddress.New(new IPEndPoint(IPAddress.Loopback, 11111), 7);
        var b = SiloAddress.New(new IPEndPoint(IPAddress.Loopback, 11112), 8);
        var at = new DateTimeOffset(2026, 12, 2, 10, 0, 0, TimeSpan.Zero);
        await Table.PublishAsync(new SiloLoad(a, "silo-a", 1, 100, 1000, false, at), default);
        await Table.PublishAsync(new SiloLoad(b, "silo-b", 2, 200, 1000, false, at), default);
        await Table.PublishAsync(new SiloLoad(a, "silo-a", 3, 50, 1000, true, at.AddSeconds(1)), default);

        var loads = (await Table.ReadAllAsync(default)).ToDictionary(l => l.Address);

        Assert.Equal(2, loads.Count);
        Assert.Equal(new SiloLoad(a, "silo-a", 3, 50, 1000, true, at.AddSeconds(1)), loads[a]);
        Assert.Equal(new SiloLoad(b, "silo-b", 2, 200, 1000, false, at), loads[b]);
    }

    [Fact]
    public async Task A_removed_silo_is_no_longer_read()
    {
        var a = SiloAddress.New(new IPEndPoint(IPAddress.Loopback, 11111), 7);
        await Table.PublishAsync(new SiloLoad(a, "silo-a", 1, 100, 1000, false, DateTimeOffset.UnixEpoch), default);

        await Table.RemoveAsync(a, default);

        Assert.Empty(await Table.ReadAllAsync(default));
    }
}
