using KvCache.Silo.Cluster.Membership;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

/// <summary>The behaviour every <see cref="IMembershipTable"/> must have; each implementation's test class derives from it.</summary>
public abstract class MembershipTableContract
{
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>An empty table, its own for each test.</summary>
    protected abstract IMembershipTable Table { get; }

    protected static MembershipEntry Entry(string endpoint, SiloStatus status = SiloStatus.Joining, int aliveSeconds = 0) =>
        new(new SiloAddress(endpoint, 7), status, "name|" + endpoint, Start, Start.AddSeconds(aliveSeconds));

    [Fact]
    public async Task An_empty_table_is_at_version_zero()
    {
        var data = await Table.ReadAllAsync();
        Assert.Empty(data.Members);
        Assert.Equal(0, data.Version.Version);
    }

    [Fact]
    public async Task Insert_adds_a_row_and_bumps_the_version()
    {
        var empty = await Table.ReadAllAsync();
        var entry = Entry("10.0.0.1:11111");
        Assert.True(await Table.InsertRowAsync(entry, empty.Version.Next()));

        var data = await Table.ReadAllAsync();
        Assert.Equal(1, data.Version.Version);
        var row = Assert.Single(data.Members);
        Assert.Equal(entry, row.Entry);
        Assert.NotEqual(empty.Version.VersionEtag, data.Version.VersionEtag);
    }

    [Fact]
    public async Task Insert_fails_on_a_stale_table_version_or_an_existing_row()
    {
        var empty = await Table.ReadAllAsync();
        Assert.True(await Table.InsertRowAsync(Entry("a:1"), empty.Version.Next()));
        Assert.False(await Table.InsertRowAsync(Entry("b:1"), empty.Version.Next())); // stale etag

        var data = await Table.ReadAllAsync();
        Assert.False(await Table.InsertRowAsync(Entry("a:1"), data.Version.Next())); // row exists
        Assert.False(await Table.InsertRowAsync(Entry("b:1"), data.Version)); // version does not grow
        Assert.True(await Table.InsertRowAsync(Entry("b:1"), data.Version.Next()));
        Assert.Equal(2, (await Table.ReadAllAsync()).Members.Count);
    }

    [Fact]
    public async Task Update_compares_the_row_etag_and_the_table_version()
    {
        var empty = await Table.ReadAllAsync();
        Assert.True(await Table.InsertRowAsync(Entry("a:1"), empty.Version.Next()));
        var data = await Table.ReadAllAsync();
        Assert.True(await Table.InsertRowAsync(Entry("b:1"), data.Version.Next()));
        string oldEtag = data.Find(new SiloAddress("a:1", 7))!.Value.ETag;

        data = await Table.ReadAllAsync();
        var a = data.Find(new SiloAddress("a:1", 7))!.Value;
        Assert.False(await Table.UpdateRowAsync(a.Entry with { Status = SiloStatus.Active }, a.ETag, empty.Version.Next())); // stale table
        Assert.False(await Table.UpdateRowAsync(Entry("c:1", SiloStatus.Active), a.ETag, data.Version.Next())); // no row
        Assert.True(await Table.UpdateRowAsync(a.Entry with { Status = SiloStatus.Active }, a.ETag, data.Version.Next()));

        data = await Table.ReadAllAsync();
        var updated = data.Find(new SiloAddress("a:1", 7))!.Value;
        Assert.Equal(SiloStatus.Active, updated.Entry.Status);
        Assert.NotEqual(a.ETag, updated.ETag);
        Assert.False(await Table.UpdateRowAsync(a.Entry with { Status = SiloStatus.Dead }, oldEtag, data.Version.Next())); // stale row etag
        Assert.Equal(3, data.Version.Version);
    }

    [Fact]
    public async Task IAmAlive_moves_only_the_heartbeat()
    {
        var empty = await Table.ReadAllAsync();
        Assert.True(await Table.InsertRowAsync(Entry("a:1", SiloStatus.Dead), empty.Version.Next()));
        var before = await Table.ReadAllAsync();

        await Table.UpdateIAmAliveAsync(Entry("a:1", SiloStatus.Active, aliveSeconds: 42));
        await Table.UpdateIAmAliveAsync(Entry("unknown:1", SiloStatus.Active, aliveSeconds: 42));

        var after = await Table.ReadAllAsync();
        var row = Assert.Single(after.Members);
        Assert.Equal(Start.AddSeconds(42), row.Entry.IAmAliveTime);
        Assert.Equal(SiloStatus.Dead, row.Entry.Status); // a heartbeat never revives
        Assert.Equal(before.Version, after.Version);
        Assert.Equal(before.Members[0].ETag, row.ETag);
    }

    [Fact]
    public async Task Of_concurrent_writers_on_one_version_exactly_one_wins()
    {
        var empty = await Table.ReadAllAsync();
        var attempts = Enumerable.Range(0, 50).Select(i => Task.Run(async () => await Table.InsertRowAsync(Entry($"s{i}:1"), empty.Version.Next())));
        var won = await Task.WhenAll(attempts);
        Assert.Single(won, w => w);
        Assert.Single((await Table.ReadAllAsync()).Members);
    }
}
