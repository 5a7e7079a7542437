namespace KvCache.Gateway.Auth;

/// <summary>API keys and the tenants they belong to (section <c>Auth</c>).</summary>
public sealed class AuthOptions
{
    public const string SectionName = "Auth";

    /// <summary>
    /// Accepted keys. When empty, every caller is <see cref="DevTenant"/> (embedded development mode) and a
    /// warning is logged at start.
    /// </summary>
    public List<ApiKeyOptions> ApiKeys { get; set; } = [];

    /// <summary>Tenant of every caller when no keys are configured.</summary>
    public string DevTenant { get; set; } = "dev";
}

/// <summary>One API key. Give its SHA-256 (hex) rather than the key itself where the configuration is stored.</summary>
public sealed class ApiKeyOptions
{
    public string Tenant { get; set; } = "";

    /// <summary>Lowercase or uppercase hex SHA-256 of the key.</summary>
    public string? KeySha256 { get; set; }

    /// <summary>The key itself (from an environment variable or a mounted secret, never from the repo).</summary>
    public string? Key { get; set; }

    /// <summary>Whether the key may make administrative calls (drain, migrate, list silos).</summary>
    public bool Admin { get; set; }

    public override string ToString() => $"ApiKey(Tenant={Tenant}, Admin={Admin}, Key=***)";
}
