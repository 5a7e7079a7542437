using System.Collections.Concurrent;
using KvCache.Gateway.Quotas.Internal;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using Grpc.Core;
using Microsoft.Extensions.Options;

namespace KvCache.Gateway.Quotas;

/// <summary>
/// Enforces <see cref="QuotaOptions"/>: sessions and cache bytes per tenant (counted from the session store on a
/// tenant's first call, so they survive restarts, then kept current), decode tokens per second and concurrent
/// Decode streams. A call over a quota fails with RESOURCE_EXHAUSTED; deleting sessions gives their share back.
/// </summary>
/// <remarks>Cache bytes are what sessions really hold (the engine's count for their codec, as GetSession's
/// cache_bytes): a call is admitted on an estimate of what it adds, then settled from the session store after it
/// (<see cref="SettleAsync"/>). So one call, or concurrent calls of one tenant, may pass a byte quota by at most what
/// the estimate missed; the tenant's next call is then refused. Counts are this gateway's view: with several
/// gateways, sessions created through another are seen on the next recount (when this gateway would refuse a
/// session).</remarks>
public sealed class TenantQuotas(ISessionService sessions, IOptions<QuotaOptions> options, TimeProvider time)
{
    private const int ListPageSize = 1000;

    private readonly QuotaOptions _options = options.Value;
    private readonly ConcurrentDictionary<string, TenantLimits> _limits = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TenantUsage> _usage = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TokenBucket> _buckets = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DecodeSlots> _decodes = new(StringComparer.Ordinal);

    public TenantLimits LimitsOf(string tenant) => _limits.GetOrAdd(tenant, _options.For);

    /// <summary>Runs <paramref name="create"/> if the tenant may hold one more session.</summary>
    public async Task<SessionInfo> CreateSessionAsync(string tenant, Func<Task<SessionInfo>> create, CancellationToken cancellationToken)
    {
        var limits = LimitsOf(tenant);
        if (!limits.TracksSessions)
        {
            return await create();
        }

        var usage = _usage.GetOrAdd(tenant, _ => new TenantUsage());
        await usage.Gate.WaitAsync(cancellationToken);
        try
        {
            if (!usage.Loaded)
            {
                await LoadAsync(tenant, usage, cancellationToken);
            }

            if (limits.MaxSessions > 0 && usage.SessionCount >= limits.MaxSessions)
            {
                // Sessions may have ended through another gateway: recount before refusing.
                await LoadAsync(tenant, usage, cancellationToken);
                if (usage.SessionCount >= limits.MaxSessions)
                {
                    throw Exhausted($"Tenant '{tenant}' holds {usage.SessionCount} sessions, its quota; delete one first.");
                }
            }

            var info = await create();
            usage.Set(info.Id, info.Position, info.CacheBytes, info.BytesPerToken);
            return info;
        }
        finally
        {
            usage.Gate.Release();
        }
    }

    /// <summary>Refuses adding <paramref name="tokens"/> tokens to the session if the tenant's cache bytes would pass its quota.</summary>
    public async ValueTask CheckCacheAsync(SessionKey key, long tokens, CancellationToken cancellationToken)
    {
        var limits = LimitsOf(key.Tenant);
        if (limits.MaxCacheBytes == 0)
        {
            return;
        }

        var usage = await UsageAsync(key.Tenant, cancellationToken);
        if (!usage.TryEstimate(key.SessionId, tokens, out var added))
        {
            // Created through another gateway (or unknown: NOT_FOUND comes from here).
            var info = await sessions.GetAsync(key, cancellationToken);
            usage.Set(info.Id, info.Position, info.CacheBytes, info.BytesPerToken);
            usage.TryEstimate(key.SessionId, tokens, out added);
        }

        var total = usage.CacheBytes;
        if (total + added > limits.MaxCacheBytes)
        {
            throw Exhausted(
                $"Tenant '{key.Tenant}' caches {total} bytes; {tokens} more tokens (about {added} bytes) would pass its quota of {limits.MaxCacheBytes}. Delete a session first.");
        }
    }

    /// <summary>After a call that grew the session: charges what it really holds now, as the session store reports it.</summary>
    public async Task SettleAsync(SessionKey key, CancellationToken cancellationToken)
    {
        if (LimitsOf(key.Tenant).MaxCacheBytes == 0 || !_usage.TryGetValue(key.Tenant, out var usage))
        {
            return;
        }

        var info = await sessions.GetAsync(key, cancellationToken);
        usage.Set(info.Id, info.Position, info.CacheBytes, info.BytesPerToken);
    }

    /// <summary>Records a session's new position during a call that moves it (estimated until <see cref="SettleAsync"/>).</summary>
    public void Advanced(SessionKey key, long position)
    {
        if (_usage.TryGetValue(key.Tenant, out var usage))
        {
            usage.Advance(key.SessionId, position);
        }
    }

    /// <summary>Gives a deleted session's share back.</summary>
    public void Deleted(SessionKey key)
    {
        if (_usage.TryGetValue(key.Tenant, out var usage))
        {
            usage.Remove(key.SessionId);
        }
    }

    /// <summary>Holds one of the tenant's concurrent Decode streams until disposed.</summary>
    public IDisposable EnterDecode(string tenant)
    {
        var max = LimitsOf(tenant).MaxConcurrentDecodes;
        var slots = _decodes.GetOrAdd(tenant, _ => new DecodeSlots());
        if (Interlocked.Increment(ref slots.Count) > max && max > 0)
        {
            Interlocked.Decrement(ref slots.Count);
            throw Exhausted($"Tenant '{tenant}' has {max} Decode streams open, its quota.");
        }

        return slots;
    }

    /// <summary>Takes one decoded token from the tenant's rate quota.</summary>
    public void TakeDecodeToken(string tenant)
    {
        if (Bucket(tenant) is { } bucket && !bucket.TryTake())
        {
            throw Exhausted(
                $"Tenant '{tenant}' decodes at most {LimitsOf(tenant).DecodeTokensPerSecond} tokens per second; retry in {bucket.UntilNext().TotalMilliseconds:F0} ms (with the same request_id to resume).");
        }
    }

    /// <summary>Returns a token taken for a step that produced none.</summary>
    public void ReturnDecodeToken(string tenant) => Bucket(tenant)?.Return();

    private TokenBucket? Bucket(string tenant)
    {
        var limits = LimitsOf(tenant);
        return limits.DecodeTokensPerSecond > 0
            ? _buckets.GetOrAdd(tenant, _ => new TokenBucket(limits.DecodeTokensPerSecond, limits.DecodeBurstTokens, time))
            : null;
    }

    private async ValueTask<TenantUsage> UsageAsync(string tenant, CancellationToken cancellationToken)
    {
        var usage = _usage.GetOrAdd(tenant, _ => new TenantUsage());
        if (!usage.Loaded)
        {
            await usage.Gate.WaitAsync(cancellationToken);
            try
            {
                if (!usage.Loaded)
                {
                    await LoadAsync(tenant, usage, cancellationToken);
                }
            }
            finally
            {
                usage.Gate.Release();
            }
        }

        return usage;
    }

    private async Task LoadAsync(string tenant, TenantUsage usage, CancellationToken cancellationToken)
    {
        var all = new List<(string, long, long, long)>();
        string? token = null;
        do
        {
            var page = await sessions.ListAsync(tenant, ListPageSize, token, cancellationToken);
            all.AddRange(page.Sessions.Select(s => (s.Id, s.Position, s.CacheBytes, s.BytesPerToken)));
            token = string.IsNullOrEmpty(page.NextPageToken) ? null : page.NextPageToken;
        }
        while (token is not null);
        usage.Reset(all);
    }

    private static RpcException Exhausted(string message) => new(new Status(StatusCode.ResourceExhausted, message));

    private sealed class DecodeSlots : IDisposable
    {
        public int Count;

        public void Dispose() => Interlocked.Decrement(ref Count);
    }
}
