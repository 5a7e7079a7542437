namespace KvCache.Gateway.Quotas;

/// <summary>Per-tenant quotas (section <c>Quotas</c>): <see cref="Default"/> for every tenant, overridden field by field
/// in <see cref="Tenants"/>. A limit of 0 means unlimited.</summary>
public sealed class QuotaOptions
{
    public const string SectionName = "Quotas";

    public TenantQuotaOptions Default { get; set; } = new();

    /// <summary>Overrides by tenant name; a field left out takes <see cref="Default"/>'s value.</summary>
    public Dictionary<string, TenantQuotaOptions> Tenants { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The effective limits of <paramref name="tenant"/>.</summary>
    public TenantLimits For(string tenant)
    {
        var o = Tenants.GetValueOrDefault(tenant);
        var rate = o?.DecodeTokensPerSecond ?? Default.DecodeTokensPerSecond ?? 0;
        return new TenantLimits(
            o?.MaxSessions ?? Default.MaxSessions ?? 0,
            o?.MaxCacheBytes ?? Default.MaxCacheBytes ?? 0,
            rate,
            o?.DecodeBurstTokens ?? Default.DecodeBurstTokens ?? Math.Max(1, (int)Math.Ceiling(rate)),
            o?.MaxConcurrentDecodes ?? Default.MaxConcurrentDecodes ?? 0);
    }
}

/// <summary>One tenant's quotas; null fields inherit.</summary>
public sealed class TenantQuotaOptions
{
    /// <summary>Most sessions the tenant may hold (active or spilled).</summary>
    public int? MaxSessions { get; set; }

    /// <summary>Most cache bytes over all the tenant's sessions, each counted as what it really holds (GetSession's cache_bytes).</summary>
    public long? MaxCacheBytes { get; set; }

    /// <summary>Decoded tokens per second, refilled continuously (token bucket).</summary>
    public double? DecodeTokensPerSecond { get; set; }

    /// <summary>Bucket size: tokens decodable at once after an idle spell (default: one second's worth).</summary>
    public int? DecodeBurstTokens { get; set; }

    /// <summary>Most Decode streams the tenant may have open at once.</summary>
    public int? MaxConcurrentDecodes { get; set; }
}

/// <summary>A tenant's effective limits (0 = unlimited).</summary>
public sealed record TenantLimits(int MaxSessions, long MaxCacheBytes, double DecodeTokensPerSecond, int DecodeBurstTokens, int MaxConcurrentDecodes)
{
    /// <summary>Whether the tenant's sessions must be counted (their number or their bytes are limited).</summary>
    public bool TracksSessions => MaxSessions > 0 || MaxCacheBytes > 0;
}
