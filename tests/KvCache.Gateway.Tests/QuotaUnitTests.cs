using Grpc.Core;
using KvCache.Gateway.Auth;
using KvCache.Gateway.Quotas;
using KvCache.Gateway.Quotas.Internal;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace KvCache.Gateway.Tests;

public sealed class QuotaUnitTests
{
    private const long BytesPerToken = 1000;

    [Fact]
    public async Task Session_quota_refuses_one_more_and_is_restored_when_a_session_ends()
    {
        var sessions = new FakeSessions();
        var quotas = Quotas(sessions, new QuotaOptions { Default = new() { MaxSessions = 2 } });

        await Create(quotas, sessions, "t", "a");
        await Create(quotas, sessions, "t", "b");
        Assert.Equal(StatusCode.ResourceExhausted, (await Assert.ThrowsAsync<RpcException>(() => Create(quotas, sessions, "t", "c"))).StatusCode);
        await Create(quotas, sessions, "other", "c");

        sessions.Remove(new SessionKey("t", "a"));
        quotas.Deleted(new SessionKey("t", "a"));
        await Create(quotas, sessions, "t", "c");
    }

    [Fact]
    public async Task Session_counts_come_from_the_store_so_they_survive_a_restart()
    {
        var sessions = new FakeSessions();
        sessions.Add(new SessionKey("t", "old-1"), 10);
        sessions.Add(new SessionKey("t", "old-2"), 0);
        var quotas = Quotas(sessions, new QuotaOptions { Default = new() { MaxSessions = 2 } });

        Assert.Equal(StatusCode.ResourceExhausted, (await Assert.ThrowsAsync<RpcException>(() => Create(quotas, sessions, "t", "new"))).StatusCode);

        // Deleted elsewhere (another gateway): the recount before refusing sees it.
        sessions.Remove(new SessionKey("t", "old-2"));
        await Create(quotas, sessions, "t", "new");
    }

    [Fact]
    public async Task Cache_byte_quota_counts_every_session_at_its_position_and_is_restored_by_delete()
    {
        var sessions = new FakeSessions();
        var a = new SessionKey("t", "a");
        var b = new SessionKey("t", "b");
        sessions.Add(a, 60);
        sessions.Add(b, 0);
        var quotas = Quotas(sessions, new QuotaOptions { Tenants = { ["t"] = new() { MaxCacheBytes = 100 * BytesPerToken } } });

        await quotas.CheckCacheAsync(b, 40, default);
        quotas.Advanced(b, 40);
        var refused = await Assert.ThrowsAsync<RpcException>(() => quotas.CheckCacheAsync(b, 1, default).AsTask());
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        await quotas.CheckCacheAsync(new SessionKey("other", "x"), 1_000_000, default);

        quotas.Deleted(a);
        await quotas.CheckCacheAsync(b, 60, default);

        // Another tenant's id is looked up under the caller's tenant: NOT_FOUND, never the other's size.
        var missing = await Assert.ThrowsAsync<SessionException>(() => quotas.CheckCacheAsync(new SessionKey("t", "unknown"), 1, default).AsTask());
        Assert.Equal(SessionErrorCode.NotFound, missing.Code);
    }

    [Fact]
    public async Task Cache_byte_quota_charges_what_a_session_really_holds_not_position_times_bytes_per_token()
    {
        // Like a fourier session inside its window: it holds twice its advertised (after-window) bytes per token.
        var sessions = new FakeSessions();
        var a = new SessionKey("t", "a");
        sessions.Add(a, 0, heldPerToken: 2 * BytesPerToken);
        var options = new QuotaOptions { Tenants = { ["t"] = new() { MaxCacheBytes = 100 * BytesPerToken } } };
        var quotas = Quotas(sessions, options);

        await quotas.CheckCacheAsync(a, 40, default);
        sessions.Add(a, 40, heldPerToken: 2 * BytesPerToken);
        await quotas.SettleAsync(a, default);

        // 80 kB held: 10 more tokens at the rate held so far fit exactly, 11 do not.
        await quotas.CheckCacheAsync(a, 10, default);
        Assert.Equal(StatusCode.ResourceExhausted, (await Assert.ThrowsAsync<RpcException>(() => quotas.CheckCacheAsync(a, 11, default).AsTask())).StatusCode);

        // Tokens decoded before the next settle are estimated at that rate too.
        quotas.Advanced(a, 45);
        await quotas.CheckCacheAsync(a, 5, default);
        Assert.Equal(StatusCode.ResourceExhausted, (await Assert.ThrowsAsync<RpcException>(() => quotas.CheckCacheAsync(a, 6, default).AsTask())).StatusCode);

        // A restarted gateway counts the real bytes from the store.
        var restarted = Quotas(sessions, options);
        await restarted.CheckCacheAsync(a, 10, default);
        Assert.Equal(StatusCode.ResourceExhausted, (await Assert.ThrowsAsync<RpcException>(() => restarted.CheckCacheAsync(a, 11, default).AsTask())).StatusCode);
    }

    [Fact]
    public void Decode_rate_is_a_token_bucket_on_the_clock()
    {
        var time = new FakeTimeProvider();
        var quotas = Quotas(new FakeSessions(), new QuotaOptions { Default = new() { DecodeTokensPerSecond = 10, DecodeBurstTokens = 3 } }, time);

        for (var i = 0; i < 3; i++)
        {
            quotas.TakeDecodeToken("t");
        }

        Assert.Equal(StatusCode.ResourceExhausted, Assert.Throws<RpcException>(() => quotas.TakeDecodeToken("t")).StatusCode);
        quotas.TakeDecodeToken("other");

        time.Advance(TimeSpan.FromMilliseconds(100));
        quotas.TakeDecodeToken("t");
        Assert.Throws<RpcException>(() => quotas.TakeDecodeToken("t"));

        quotas.ReturnDecodeToken("t");
        quotas.TakeDecodeToken("t");

        // Refill stops at the burst size.
        time.Advance(TimeSpan.FromHours(1));
        for (var i = 0; i < 3; i++)
        {
            quotas.TakeDecodeToken("t");
        }

        Assert.Throws<RpcException>(() => quotas.TakeDecodeToken("t"));
    }

    [Fact]
    public void Concurrent_decode_streams_are_limited_per_tenant()
    {
        var quotas = Quotas(new FakeSessions(), new QuotaOptions { Default = new() { MaxConcurrentDecodes = 1 }, Tenants = { ["big"] = new() { MaxConcurrentDecodes = 0 } } });

        var first = quotas.EnterDecode("t");
        Assert.Equal(StatusCode.ResourceExhausted, Assert.Throws<RpcException>(() => quotas.EnterDecode("t")).StatusCode);
        using (quotas.EnterDecode("u"))
        using (quotas.EnterDecode("big"))
        using (quotas.EnterDecode("big"))
        {
        }

        first.Dispose();
        quotas.EnterDecode("t").Dispose();
    }

    [Fact]
    public void Tenant_settings_override_the_defaults_field_by_field_and_negative_limits_fail_validation()
    {
        var options = new QuotaOptions
        {
            Default = new() { MaxSessions = 5, MaxCacheBytes = 7, DecodeTokensPerSecond = 2.5 },
            Tenants = { ["t"] = new() { MaxSessions = 9 } },
        };

        Assert.Equal(new TenantLimits(9, 7, 2.5, 3, 0), options.For("t"));
        Assert.Equal(new TenantLimits(5, 7, 2.5, 3, 0), options.For("u"));
        Assert.True(new QuotaOptionsValidator().Validate(null, options).Succeeded);

        options.Tenants["bad"] = new() { MaxSessions = -1, DecodeBurstTokens = 0 };
        var result = new QuotaOptionsValidator().Validate(null, options);
        Assert.True(result.Failed);
        Assert.Contains("Quotas:Tenants:bad:MaxSessions", result.FailureMessage);
        Assert.Contains("Quotas:Tenants:bad:DecodeBurstTokens", result.FailureMessage);
    }

    [Fact]
    public void Admin_calls_need_a_key_with_the_admin_role()
    {
        var auth = new TenantAuthenticator(Options.Create(new AuthOptions
        {
            ApiKeys = [new() { Tenant = "ops", Key = "admin-key", Admin = true }, new() { Tenant = "acme", Key = "tenant-key" }],
        }));

        Assert.Equal("ops", auth.AuthenticateAdmin(Bearer("admin-key")));
        Assert.Equal("acme", auth.Authenticate(Bearer("tenant-key")));
        Assert.Equal(StatusCode.PermissionDenied, Assert.Throws<RpcException>(() => auth.AuthenticateAdmin(Bearer("tenant-key"))).StatusCode);
        Assert.Equal(StatusCode.Unauthenticated, Assert.Throws<RpcException>(() => auth.AuthenticateAdmin(Bearer("unknown"))).StatusCode);
        Assert.Equal(StatusCode.Unauthenticated, Assert.Throws<RpcException>(() => auth.AuthenticateAdmin(new Metadata())).StatusCode);

        var dev = new TenantAuthenticator(Options.Create(new AuthOptions { DevTenant = "dev" }));
        Assert.Equal("dev", dev.AuthenticateAdmin(new Metadata()));
    }

    private static Metadata Bearer(string key) => new() { { "authorization", $"Bearer {key}" } };

    private static TenantQuotas Quotas(FakeSessions sessions, QuotaOptions options, TimeProvider? time = null) =>
        new(sessions, Options.Create(options), time ?? TimeProvider.System);

    private static Task<SessionInfo> Create(TenantQuotas quotas, FakeSessions sessions, string tenant, string id) =>
        quotas.CreateSessionAsync(tenant, () => Task.FromResult(sessions.Add(new SessionKey(tenant, id), 0)), default);

    /// <summary>Just enough of a session service for the quotas: list, get, and a position per session.</summary>
    private sealed class FakeSessions : ISessionService
    {
        private readonly SortedDictionary<string, (SessionKey Key, long Position, long HeldPerToken)> _sessions = new(StringComparer.Ordinal);

        /// <param name="heldPerToken">What the session really holds per token (default: its bytes per token).</param>
        public SessionInfo Add(SessionKey key, long position, long heldPerToken = BytesPerToken)
        {
            _sessions[key.ToString()] = (key, position, heldPerToken);
            return Info(key.SessionId, position, heldPerToken);
        }

        public void Remove(SessionKey key) => _sessions.Remove(key.ToString());

        public Task<SessionInfo> GetAsync(SessionKey key, CancellationToken cancellationToken) =>
            _sessions.TryGetValue(key.ToString(), out var s)
                ? Task.FromResult(Info(key.SessionId, s.Position, s.HeldPerToken))
                : throw new SessionException(SessionErrorCode.NotFound, $"Session '{key.SessionId}' does not exist.");

        public Task<SessionListPage> ListAsync(string tenant, int pageSize, string? pageToken, CancellationToken cancellationToken)
        {
            // One session per page, to exercise paging.
            var next = _sessions.Values.Where(s => s.Key.Tenant == tenant && string.CompareOrdinal(s.Key.SessionId, pageToken ?? "") > 0).Take(1).ToArray();
            return Task.FromResult(new SessionListPage(
                next.Select(s => Info(s.Key.SessionId, s.Position, s.HeldPerToken)).ToArray(),
                next.Length == 0 ? null : next[0].Key.SessionId));
        }

        public Task<SessionInfo> CreateAsync(string tenant, string? model, string? codec, string? sessionId, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<SessionInfo> ForkAsync(SessionKey source, long position, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<AppendResult> AppendAsync(SessionKey key, AppendInput input, CancellationToken cancellationToken) => throw new NotSupportedException();

        public IAsyncEnumerable<DecodedToken> DecodeAsync(SessionKey key, DecodeRequestOptions options, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<SessionInfo> SpillAsync(SessionKey key, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task DeleteAsync(SessionKey key, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<IReadOnlyList<ModelDescription>> ListModelsAsync(string tenant, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<(MigrationResult Result, SessionInfo Session)> MigrateAsync(SessionKey key, string? targetSilo, CancellationToken cancellationToken) =>
            throw new NotSupportedException();

        private static SessionInfo Info(string id, long position, long heldPerToken) =>
            new(id, "m", "full", position, SessionResidency.Spilled, null, position * heldPerToken, BytesPerToken, 1 << 20);
    }
}
