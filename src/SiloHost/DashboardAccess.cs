using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace KvCache.SiloHost;

/// <summary>
/// The Orleans dashboard on the silo's HTTP port (section <see cref="SectionName"/>). Off by default. When on, a caller
/// needs the admin credential (<see cref="KeySha256"/> or <see cref="Key"/>, as HTTP Basic password or Bearer token);
/// with no credential configured, only callers on the silo's own host (a port-forward) are let in.
/// </summary>
public sealed class DashboardAccessOptions
{
    public const string SectionName = "Dashboard";
    public const string Path = "/dashboard";

    public bool Enabled { get; set; }

    /// <summary>Hex SHA-256 of the credential, for stored configuration.</summary>
    public string? KeySha256 { get; set; }

    /// <summary>The credential itself, from the environment or a mounted secret only.</summary>
    public string? Key { get; set; }

    public override string ToString() => $"Enabled={Enabled}, Credential={(string.IsNullOrEmpty(KeySha256) && string.IsNullOrEmpty(Key) ? "(none: loopback only)" : "***")}";

    /// <summary>SHA-256 of the configured credential; null when none is.</summary>
    internal byte[]? CredentialHash() =>
        !string.IsNullOrEmpty(KeySha256) ? Convert.FromHexString(KeySha256)
        : !string.IsNullOrEmpty(Key) ? SHA256.HashData(Encoding.UTF8.GetBytes(Key))
        : null;
}

/// <summary>Lets a dashboard request through only as <see cref="DashboardAccessOptions"/> says.</summary>
internal sealed class DashboardAccessFilter(IOptions<DashboardAccessOptions> options) : IEndpointFilter
{
    private readonly byte[]? _credential = options.Value.CredentialHash();

    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var allowed = _credential is null
            ? http.Connection.RemoteIpAddress is { } remote && IPAddress.IsLoopback(remote)
            : PresentedCredential(http.Request.Headers.Authorization.ToString()) is { } presented
                && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), _credential);
        if (allowed)
        {
            return next(context);
        }

        http.Response.Headers.WWWAuthenticate = "Basic realm=\"kvcache-dashboard\"";
        return ValueTask.FromResult<object?>(Results.Unauthorized());
    }

    /// <summary>The Bearer token, or the password of HTTP Basic (what a browser sends).</summary>
    private static string? PresentedCredential(string header)
    {
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return header["Bearer ".Length..].Trim();
        }

        if (header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                var userAndPassword = Encoding.UTF8.GetString(Convert.FromBase64String(header["Basic ".Length..].Trim()));
                var colon = userAndPassword.IndexOf(':');
                return colon >= 0 ? userAndPassword[(colon + 1)..] : null;
            }
            catch (FormatException)
            {
                return null;
            }
        }

        return null;
    }
}
