using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Storage;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

/// <summary>The behaviour every <see cref="IGrainDirectory"/> must have; each implementation's test class derives from it.</summary>
public abstract class GrainDirectoryContract
{
    protected static readonly SiloAddress SiloA = new("10.0.0.1:11111", 1);
    protected static readonly SiloAddress SiloB = new("10.0.0.2:11111", 1);
    protected static readonly SiloAddress SiloC = new("10.0.0.3:11111", 1);

    private readonly string _tenant = "t" + Guid.NewGuid().ToString("N")[..12];

    protected abstract IGrainDirectory Directory { get; }

    protected SessionKey Key(string session) => new(_tenant, session);

    protected static GrainAddress Activation(SessionKey key, SiloAddress silo) => new(key, silo, ActivationId.NewId());

    [Fact]
    public async Task Register_on_an_empty_entry_wins_with_epoch_one()
    {
        var key = Key("s");
        Assert.Null(await Directory.LookupAsync(key));
        var a = Activation(key, SiloA);

        var registered = await Directory.RegisterAsync(a, previous: null);

        Assert.True(registered.Matches(a));
        Assert.Equal(a with { Epoch = 1 }, registered);
        Assert.Equal(registered, await Directory.LookupAsync(key));
    }

    [Fact]
    public async Task Register_without_the_current_entry_as_previous_returns_the_owner()
    {
        var key = Key("s");
        var a = await Directory.RegisterAsync(Activation(key, SiloA), null);

        var b = Activation(key, SiloB);
        Assert.Equal(a, await Directory.RegisterAsync(b, previous: null));
        Assert.Equal(a, await Directory.RegisterAsync(b, previous: Activation(key, SiloC)));
        Assert.Equal(a, await Directory.LookupAsync(key));
    }

    [Fact]
    public async Task Register_with_the_current_entry_as_previous_takes_it_over_with_the_next_epoch()
    {
        var key = Key("s");
        var a = await Directory.RegisterAsync(Activation(key, SiloA), null);
        var b = Activation(key, SiloB);

        var registered = await Directory.RegisterAsync(b, previous: a);

        Assert.Equal(b with { Epoch = a.Epoch + 1 }, registered);
        Assert.Equal(registered, await Directory.LookupAsync(key));
    }

    [Fact]
    public async Task Registering_the_owner_again_changes_nothing()
    {
        var key = Key("s");
        var a = Activation(key, SiloA);
        var first = await Directory.RegisterAsync(a, null);
        Assert.Equal(first, await Directory.RegisterAsync(a, null));
        Assert.Equal(first, await Directory.RegisterAsync(a, Activation(key, SiloB)));
        Assert.Equal(1, (await Directory.LookupAsync(key))!.Epoch);
    }

    [Fact]
    public async Task Unregister_removes_only_the_matching_activation_and_epochs_are_never_reused()
    {
        var key = Key("s");
        var a = await Directory.RegisterAsync(Activation(key, SiloA), null);

        Assert.False(await Directory.UnregisterAsync(Activation(key, SiloA))); // same silo, other activation
        Assert.Equal(a, await Directory.LookupAsync(key));
        Assert.True(await Directory.UnregisterAsync(a with { Epoch = 0 }));
        Assert.Null(await Directory.LookupAsync(key));
        Assert.False(await Directory.UnregisterAsync(a));

        var b = await Directory.RegisterAsync(Activation(key, SiloB), null);
        Assert.Equal(2, b.Epoch);
        Assert.Equal(b, await Directory.LookupAsync(key));
    }

    [Fact]
    public async Task Sessions_have_independent_entries()
    {
        var one = await Directory.RegisterAsync(Activation(Key("one"), SiloA), null);
        var two = await Directory.RegisterAsync(Activation(Key("two"), SiloB), null);
        Assert.Equal(1, one.Epoch);
        Assert.Equal(1, two.Epoch);
        Assert.Null(await Directory.LookupAsync(new SessionKey(_tenant + "x", "one")));
    }

    [Fact]
    public async Task Invalid_ids_are_refused()
    {
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Directory.LookupAsync(new SessionKey(_tenant, "a}b")).AsTask());
        await Assert.ThrowsAnyAsync<ArgumentException>(() => Directory.RegisterAsync(Activation(new SessionKey("t:x", "s"), SiloA), null).AsTask());
    }

    /// <summary>1,000 activations of one session race from 3 silos: exactly one wins, and every caller learns it.</summary>
    [Fact]
    public async Task Of_1000_concurrent_registrations_from_3_silos_exactly_one_owns_the_session()
    {
        var key = Key("contended");
        SiloAddress[] silos = [SiloA, SiloB, SiloC];
        var attempts = Enumerable.Range(0, 1000).Select(i => Task.Run(async () =>
        {
            var mine = Activation(key, silos[i % 3]);
            return (Mine: mine, Registered: await Directory.RegisterAsync(mine, previous: null));
        }));

        var results = await Task.WhenAll(attempts);

        var owner = await Directory.LookupAsync(key);
        Assert.NotNull(owner);
        Assert.Single(results, r => r.Registered.Matches(r.Mine));
        Assert.All(results, r => Assert.Equal(owner, r.Registered));
        Assert.Equal(1, owner.Epoch);
    }

    /// <summary>Takeovers race too: each succeeds only against the entry it saw, so epochs stay one per winner.</summary>
    [Fact]
    public async Task Concurrent_takeovers_each_win_at_most_once_per_epoch()
    {
        var key = Key("takeover");
        await Directory.RegisterAsync(Activation(key, SiloA), null);
        SiloAddress[] silos = [SiloA, SiloB, SiloC];
        var attempts = Enumerable.Range(0, 300).Select(i => Task.Run(async () =>
        {
            var mine = Activation(key, silos[i % 3]);
            var seen = await Directory.LookupAsync(key);
            var registered = await Directory.RegisterAsync(mine, seen);
            return registered.Matches(mine) ? registered.Epoch : 0;
        }));

        long[] won = [.. (await Task.WhenAll(attempts)).Where(e => e > 0)];

        var owner = await Directory.LookupAsync(key);
        Assert.Equal(won.Length + 1, owner!.Epoch);
        Assert.Equal(won.Length, won.Distinct().Count());
        Assert.Equal(won.Max(), owner.Epoch);
    }
}
