using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Microsoft.Extensions.Options;

namespace KvCache.Gateway.Auth;

/// <summary>Maps the <c>authorization: Bearer &lt;key&gt;</c> metadata entry to a tenant.</summary>
public sealed class TenantAuthenticator
{
    private const int MaxTenantLength = 128;

    private readonly (byte[] Hash, string Tenant, bool Admin)[] _keys;
    private readonly string? _devTenant;

    public TenantAuthenticator(IOptions<AuthOptions> options)
    {
        var o = options.Value;
        _keys = o.ApiKeys.Select(Parse).ToArray();
        _devTenant = _keys.Length == 0 ? CheckTenant(o.DevTenant, $"{AuthOptions.SectionName}:DevTenant") : null;
    }

    /// <summary>True when no keys are configured and every caller is the dev tenant.</summary>
    public bool IsDevMode => _devTenant is not null;

    /// <summary>The caller's tenant.</summary>
    /// <exception cref="RpcException">UNAUTHENTICATED: no key, or an unknown one.</exception>
    public string Authenticate(Metadata headers) => Resolve(headers.GetValue("authorization")).Tenant;

    /// <summary>The caller's tenant from an HTTP <c>Authorization</c> header's value (the OpenAI-compatible API).</summary>
    /// <exception cref="RpcException">UNAUTHENTICATED: no key, or an unknown one.</exception>
    public string Authenticate(string? authorization) => Resolve(authorization).Tenant;

    /// <summary>The caller's tenant, which must hold the admin role (in development mode the dev tenant does).</summary>
    /// <exception cref="RpcException">UNAUTHENTICATED: no key, or an unknown one; PERMISSION_DENIED: a valid key without the admin role.</exception>
    public string AuthenticateAdmin(Metadata headers)
    {
        var (tenant, admin) = Resolve(headers.GetValue("authorization"));
        return admin ? tenant : throw new RpcException(new Status(StatusCode.PermissionDenied, "This API key does not hold the admin role."));
    }

    private (string Tenant, bool Admin) Resolve(string? header)
    {
        if (_devTenant is not null)
        {
            return (_devTenant, true);
        }

        const string scheme = "Bearer ";
        if (header is null || !header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) || header.Length == scheme.Length)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "Missing 'authorization: Bearer <api key>' metadata."));
        }

        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim()), hash);
        (string Tenant, bool Admin)? match = null;
        foreach (var (keyHash, keyTenant, keyAdmin) in _keys)
        {
            // Compare every key in constant time so timing tells nothing about which one nearly matched.
            if (CryptographicOperations.FixedTimeEquals(hash, keyHash))
            {
                match = (keyTenant, keyAdmin);
            }
        }

        return match ?? throw new RpcException(new Status(StatusCode.Unauthenticated, "Unknown API key."));
    }

    /// <summary>Any name a session store can hold: the stores encode tenants in their keys, so only the length is bounded.</summary>
    private static string CheckTenant(string? tenant, string setting) =>
        string.IsNullOrWhiteSpace(tenant) ? throw Invalid($"{setting} is empty.")
        : tenant.Length > MaxTenantLength ? throw Invalid($"{setting} is longer than {MaxTenantLength} characters.")
        : tenant;

    private static OptionsValidationException Invalid(string failure) =>
        new(AuthOptions.SectionName, typeof(AuthOptions), [failure]);

    private static (byte[], string, bool) Parse(ApiKeyOptions key, int index)
    {
        CheckTenant(key.Tenant, $"{AuthOptions.SectionName}:ApiKeys:{index}:Tenant");

        if (key.KeySha256 is { Length: > 0 } hex)
        {
            try
            {
                var hash = Convert.FromHexString(hex);
                if (hash.Length == SHA256.HashSizeInBytes)
                {
                    return (hash, key.Tenant, key.Admin);
                }
            }
            catch (FormatException)
            {
            }

            throw Invalid($"Auth:ApiKeys:{index}:KeySha256 is not 64 hex digits.");
        }

        if (key.Key is { Length: > 0 } plain)
        {
            return (SHA256.HashData(Encoding.UTF8.GetBytes(plain)), key.Tenant, key.Admin);
        }

        throw Invalid($"Auth:ApiKeys:{index} has neither Key nor KeySha256.");
    }
}
