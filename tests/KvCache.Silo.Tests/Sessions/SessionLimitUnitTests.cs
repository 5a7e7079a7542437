using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Testing.Time;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace KvCache.Silo.Tests.Sessions;

/// <summary>Silo:MaxActiveSessions: idle sessions make room for a new activation; busy ones do not.</summary>
public sealed class SessionLimitUnitTests : IAsyncLifetime
{
    private const string Tenant = "acme";
    private static readonly int[] Prompt = [5, 6, 7, 8];

    private readonly ManualTimeProvider _time = new();
    private ServiceProvider _services = null!;
    private ISessionService _sessions = null!;

    public Task InitializeAsync()
    {
        _services = InProcessSilo.Build(_time, [new("Models:CacheBudgetMiB", "16"), new("Silo:SiloName", "silo-test"), new("Silo:MaxActiveSessions", "2")]);
        _sessions = _services.GetRequiredService<ISessionService>();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _services.DisposeAsync();

    [Fact]
    public async Task A_new_activation_spills_an_idle_session_and_is_refused_while_every_session_is_busy()
    {
        var a = await CreateWithPromptAsync("a");
        var b = await CreateWithPromptAsync("b");
        var c = await CreateWithPromptAsync("c");
        Assert.Equal(SessionResidency.Spilled, (await _sessions.GetAsync(a, default)).Residency);
        Assert.Equal(SessionResidency.Active, (await _sessions.GetAsync(c, default)).Residency);

        // Two decodes in progress hold both activations (b and c): a cannot come back.
        var options = new DecodeRequestOptions(8, new SamplingOptions(0, 0, 0, 0), [], null);
        await using var busyB = _sessions.DecodeAsync(b, options, default).GetAsyncEnumerator();
        await using var busyC = _sessions.DecodeAsync(c, options, default).GetAsyncEnumerator();
        Assert.True(await busyB.MoveNextAsync());
        Assert.True(await busyC.MoveNextAsync());
        var refused = await Assert.ThrowsAsync<SessionException>(() => _sessions.AppendAsync(a, Prompt, 1, default));
        Assert.Equal(SessionErrorCode.ResourceExhausted, refused.Code);

        await busyB.DisposeAsync();
        var resumed = await _sessions.AppendAsync(a, Prompt, 1, default);
        Assert.Equal(2 * Prompt.Length, resumed.Position);
    }

    private async Task<SessionKey> CreateWithPromptAsync(string id)
    {
        var key = new SessionKey(Tenant, (await _sessions.CreateAsync(Tenant, null, null, id, default)).Id);
        await _sessions.AppendAsync(key, Prompt, 1, default);
        _time.Advance(TimeSpan.FromSeconds(1));
        return key;
    }
}
