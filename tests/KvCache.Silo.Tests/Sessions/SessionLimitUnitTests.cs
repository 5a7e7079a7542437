using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Silo.Tests.Infrastructure;
using Xunit;

namespace KvCache.Silo.Tests.Sessions;

/// <summary>Silo:MaxActiveSessions: idle sessions make room for one more in memory; busy ones do not.</summary>
public sealed class SessionLimitUnitTests : IAsyncLifetime
{
    private const string Tenant = "acme";
    private static readonly int[] Prompt = [5, 6, 7, 8];

    private SessionTestCluster _cluster = null!;
    private ISessionService _sessions = null!;

    public async Task InitializeAsync()
    {
        _cluster = await SessionTestCluster.StartAsync(settings: [new("Models:CacheBudgetMiB", "16"), new("Silo:MaxActiveSessions", "2")]);
        _sessions = _cluster.Sessions;
    }

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task A_session_loading_its_cache_spills_an_idle_one_and_is_refused_while_every_one_is_busy()
    {
        var a = await CreateWithPromptAsync("a");
        var b = await CreateWithPromptAsync("b");
        var c = await CreateWithPromptAsync("c");
        Assert.Equal(SessionResidency.Spilled, (await _sessions.GetAsync(a, default)).Residency);
        Assert.Equal(SessionResidency.Active, (await _sessions.GetAsync(c, default)).Residency);

        // Two decodes in progress hold both sessions in memory (b and c): a cannot come back.
        var options = new DecodeRequestOptions(8, new SamplingOptions(0, 0, 0, 0), [], null);
        await using var busyB = _sessions.DecodeAsync(b, options, default).GetAsyncEnumerator();
        await using var busyC = _sessions.DecodeAsync(c, options, default).GetAsyncEnumerator();
        Assert.True(await busyB.MoveNextAsync());
        Assert.True(await busyC.MoveNextAsync());
        var refused = await Assert.ThrowsAsync<SessionException>(() => _sessions.AppendAsync(a, AppendInput.Tokens(Prompt, 1), default));
        Assert.Equal(SessionErrorCode.ResourceExhausted, refused.Code);

        await busyB.DisposeAsync();
        var resumed = await _sessions.AppendAsync(a, AppendInput.Tokens(Prompt, 1), default);
        Assert.Equal(2 * Prompt.Length, resumed.Position);
    }

    private Task<SessionKey> CreateWithPromptAsync(string id) => _cluster.CreateWithPromptAsync(Tenant, id, Prompt);
}
