using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Testing.Time;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

/// <summary>
/// A silo activates a session only after registering it; an entry of another silo is taken over only if
/// membership says that silo is not live, otherwise the answer is "not mine" with the owner.
/// </summary>
public sealed class GrainOwnershipUnitTests : IAsyncLifetime
{
    private const string Tenant = "acme";
    private static readonly int[] Prompt = [.. Enumerable.Range(0, 12).Select(i => (i * 37 + 11) % 500)];
    private static readonly SiloAddress Self = new("10.0.0.1:50061", 1);
    private static readonly SiloAddress Other = new("10.0.0.2:50061", 1);

    private readonly FakeOracle _oracle = new();
    private ServiceProvider _services = null!;
    private ISessionService _sessions = null!;
    private ISessionStore _store = null!;

    public Task InitializeAsync()
    {
        _services = InProcessSilo.Build(new ManualTimeProvider(), [], services => services.AddSingleton<ISiloStatusOracle>(_oracle));
        _sessions = _services.GetRequiredService<ISessionService>();
        _store = _services.GetRequiredService<ISessionStore>();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _services.DisposeAsync();

    [Fact]
    public async Task A_session_active_on_a_live_other_silo_is_not_mine_and_names_the_owner()
    {
        var key = await CreateAsync("theirs");
        _oracle.Live.Add(Other);
        var theirs = await _store.Directory.RegisterAsync(new GrainAddress(key, Other, ActivationId.NewId()), previous: null);

        var e = await Assert.ThrowsAsync<SessionException>(() => _sessions.AppendAsync(key, Prompt, 0, default));

        Assert.Equal(SessionErrorCode.NotOwner, e.Code);
        Assert.Equal(Other, e.Owner);
        Assert.Equal(theirs, await _store.Directory.LookupAsync(key));
        Assert.Equal(0, await _store.GetTokenCountAsync(key));
    }

    [Fact]
    public async Task A_session_left_on_a_silo_that_is_not_live_is_taken_over_under_a_new_epoch()
    {
        var key = await CreateAsync("orphaned");
        var dead = await _store.Directory.RegisterAsync(new GrainAddress(key, Other, ActivationId.NewId()), previous: null);

        var result = await _sessions.AppendAsync(key, Prompt, 0, default);

        Assert.Equal(Prompt.Length, result.Position);
        var entry = await _store.Directory.LookupAsync(key);
        Assert.Equal(Self, entry!.SiloAddress);
        Assert.Equal(dead.Epoch + 1, entry.Epoch);
        Assert.Equal(SessionResidency.Active, (await _sessions.GetAsync(key, default)).Residency);
    }

    [Fact]
    public async Task An_entry_of_this_silo_left_by_an_earlier_activation_is_taken_over()
    {
        var key = await CreateAsync("stale-own");
        var stale = await _store.Directory.RegisterAsync(new GrainAddress(key, Self, ActivationId.NewId()), previous: null);

        await _sessions.AppendAsync(key, Prompt, 0, default);

        var entry = await _store.Directory.LookupAsync(key);
        Assert.False(entry!.Matches(stale));
        Assert.Equal(Self, entry.SiloAddress);
    }

    private async Task<SessionKey> CreateAsync(string id)
    {
        var info = await _sessions.CreateAsync(Tenant, null, null, id, default);
        return new SessionKey(Tenant, info.Id);
    }

    private sealed class FakeOracle : ISiloStatusOracle
    {
        public HashSet<SiloAddress> Live { get; } = [Self];

        public SiloAddress SiloAddress => Self;

        public ValueTask<bool> IsLiveAsync(SiloAddress silo, CancellationToken cancellationToken) => ValueTask.FromResult(Live.Contains(silo));
    }
}
