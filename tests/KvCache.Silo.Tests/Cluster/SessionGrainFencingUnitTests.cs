using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Testing.Time;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace KvCache.Silo.Tests.Cluster;

/// <summary>The single-node silo's grains register in the store's directory and are fenced by its epochs.</summary>
public sealed class SessionGrainFencingUnitTests : IAsyncLifetime
{
    private const string Tenant = "acme";
    private static readonly int[] Prompt = [.. Enumerable.Range(0, 20).Select(i => (i * 37 + 11) % 500)];
    private static readonly SiloAddress OtherSilo = new("10.9.9.9:11111", 1);

    private ServiceProvider _services = null!;
    private ISessionService _sessions = null!;
    private ISessionStore _store = null!;

    public Task InitializeAsync()
    {
        _services = InProcessSilo.Build(new ManualTimeProvider(), [new("Silo:SiloName", "silo test/1")]);
        _sessions = _services.GetRequiredService<ISessionService>();
        _store = _services.GetRequiredService<ISessionStore>();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _services.DisposeAsync();

    [Fact]
    public async Task An_activation_owns_its_session_in_the_directory_until_it_deactivates()
    {
        var key = await CreateWithPromptAsync("owned");
        var entry = await _store.Directory.LookupAsync(key);
        Assert.NotNull(entry);
        Assert.Equal("silo-test-1", entry.SiloAddress.Endpoint);
        Assert.Equal(1, entry.Epoch);

        await _sessions.SpillAsync(key, default);
        Assert.Null(await _store.Directory.LookupAsync(key));
        Assert.NotNull(await _store.GetSnapshotAsync(key)); // written under epoch 1

        await _sessions.AppendAsync(key, new[] { 5 }, 0, default);
        Assert.Equal(2, (await _store.Directory.LookupAsync(key))!.Epoch);
    }

    [Fact]
    public async Task A_grain_whose_session_was_taken_over_reports_it_moved_and_writes_nothing()
    {
        var key = await CreateWithPromptAsync("taken");
        var mine = await _store.Directory.LookupAsync(key);
        var theirs = await _store.Directory.RegisterAsync(new GrainAddress(key, OtherSilo, ActivationId.NewId()), previous: mine);
        Assert.Equal(OtherSilo, theirs.SiloAddress);

        var e = await Assert.ThrowsAsync<SessionException>(() => _sessions.AppendAsync(key, new[] { 7, 8 }, 0, default));
        Assert.Equal(SessionErrorCode.Unavailable, e.Code);
        Assert.Contains("moved", e.Message);
        Assert.IsType<StaleEpochException>(e.InnerException);

        // Deactivated without a snapshot, the other owner's entry untouched, the log as it was.
        Assert.Equal(Prompt.Length, await _store.GetTokenCountAsync(key));
        Assert.Null(await _store.GetSnapshotAsync(key));
        Assert.Equal(theirs, await _store.Directory.LookupAsync(key));
    }

    [Fact]
    public async Task A_decode_request_of_a_grain_that_lost_its_session_is_refused()
    {
        var key = await CreateWithPromptAsync("decode");
        var mine = await _store.Directory.LookupAsync(key);
        await _store.Directory.RegisterAsync(new GrainAddress(key, OtherSilo, ActivationId.NewId()), previous: mine);

        var options = new DecodeRequestOptions(4, new SamplingOptions(0, 0, 0, 0), [], "req-1");
        var e = await Assert.ThrowsAsync<SessionException>(async () =>
        {
            await foreach (var _ in _sessions.DecodeAsync(key, options, default))
            {
            }
        });
        Assert.Equal(SessionErrorCode.Unavailable, e.Code);
        Assert.Equal(Prompt.Length, await _store.GetTokenCountAsync(key));
    }

    private async Task<SessionKey> CreateWithPromptAsync(string id)
    {
        var info = await _sessions.CreateAsync(Tenant, null, null, id, default);
        var key = new SessionKey(Tenant, info.Id);
        await _sessions.AppendAsync(key, Prompt, 0, default);
        return key;
    }
}
