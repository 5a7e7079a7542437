using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KvCache.Silo.Storage.Internal;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Storage.Redis;

/// <summary>
/// Settings of <see cref="RedisConnection"/> and <see cref="RedisSessionStore"/> (configuration section
/// <see cref="SectionName"/>). <see cref="Password"/> is a secret: never printed.
/// </summary>
public sealed class RedisStoreOptions
{
    public const string SectionName = "Spill:Redis";

    /// <summary>"host:port" of one standalone Redis server.</summary>
    public string Endpoint { get; set; } = "127.0.0.1:6379";

    /// <summary>ACL user for AUTH; null for the default user.</summary>
    public string? User { get; set; }

    /// <summary>Sent with AUTH on every connection; null or empty for none.</summary>
    public string? Password { get; set; }

    /// <summary>Logical database of every command.</summary>
    public int Database { get; set; }

    public bool UseTls { get; set; }

    /// <summary>Name the server certificate must carry; the endpoint's host if null.</summary>
    public string? TlsTargetHost { get; set; }

    /// <summary>
    /// PEM file of a private CA (a root or an intermediate) that the server's certificate may chain to, besides the
    /// system's trusted roots; the name is still checked. Null for the system's roots only. Needs <see cref="UseTls"/>.
    /// </summary>
    public string? TlsCaCertificate { get; set; }

    /// <summary>
    /// PEM file of the certificate this client presents, for a Redis with <c>tls-auth-clients yes</c> (mutual TLS);
    /// null for none. Needs <see cref="UseTls"/>.
    /// </summary>
    public string? TlsClientCertificate { get; set; }

    /// <summary>PEM file of <see cref="TlsClientCertificate"/>'s unencrypted private key; null if that file holds it.</summary>
    public string? TlsClientKey { get; set; }

    /// <summary>Limit on TCP connect, TLS handshake and AUTH together, for the first connect and every reconnect.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Limit on one command's round trip, after which it fails with a timeout (it may still have run). A 1 MiB
    /// chunk takes about a millisecond, so this bounds only a stalled server or network.
    /// </summary>
    public TimeSpan CommandTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Connections (multiplexers) that operations are spread over. Each has one socket and one reader, so a second
    /// one lets snapshot chunks move on both cores of a small silo.
    /// </summary>
    public int Connections { get; set; } = 2;

    /// <summary>First part of every key, so several deployments can share one Redis.</summary>
    public string KeyPrefix { get; set; } = "kvc";

    /// <summary>
    /// Chunks of a snapshot that is never committed (its writer died) expire after this; committing makes a
    /// snapshot's chunks permanent.
    /// </summary>
    public TimeSpan UncommittedChunkTtl { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        _ = ParseEndpoint();
        ArgumentOutOfRangeException.ThrowIfNegative(Database);
        ValidateMilliseconds(ConnectTimeout, nameof(ConnectTimeout));
        ValidateMilliseconds(CommandTimeout, nameof(CommandTimeout));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Connections);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Connections, 16);
        StoreArguments.ValidateId(KeyPrefix, nameof(KeyPrefix));
        ArgumentOutOfRangeException.ThrowIfLessThan(UncommittedChunkTtl, TimeSpan.FromSeconds(1));
        ValidateTlsFiles();
    }

    /// <summary>
    /// StackExchange.Redis settings for these options (endpoint, credentials, TLS, timeouts, reconnect policy), for
    /// components that make their own connections to the same Redis (Orleans' Redis clustering and grain directory).
    /// </summary>
    public StackExchange.Redis.ConfigurationOptions ToConfigurationOptions() => RedisConnection.CreateConfiguration(this);

    /// <summary>
    /// Why the registered settings (<c>AddRedisSessionStore</c>) cannot be used, in one line naming the setting, or
    /// null (also when none are registered). A process asks before it starts: Orleans' Redis providers read these
    /// settings before the start's validation and would stop it on them with a stack trace.
    /// </summary>
    public static string? StartFailure(IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        try
        {
            _ = ((IOptions<RedisStoreOptions>?)services.GetService(typeof(IOptions<RedisStoreOptions>)))?.Value;
            return null;
        }
        catch (OptionsValidationException e)
        {
            return string.Join(" ", e.Failures);
        }
    }

    /// <summary>Host and port of <see cref="Endpoint"/> ("[::1]:6379" for IPv6).</summary>
    internal (string Host, int Port) ParseEndpoint()
    {
        int colon = Endpoint?.LastIndexOf(':') ?? -1;
        if (colon <= 0 || !int.TryParse(Endpoint.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is <= 0 or > 65535)
        {
            throw new ArgumentException($"Redis endpoint '{Endpoint}' is not 'host:port'.", nameof(Endpoint));
        }

        return (Endpoint![..colon].Trim('[', ']'), port);
    }

    public override string ToString() =>
        $"Endpoint={Endpoint}, User={User ?? "(default)"}, Password={(string.IsNullOrEmpty(Password) ? "(none)" : "***")}, " +
        $"Database={Database}, UseTls={UseTls}, TlsTargetHost={TlsTargetHost ?? "(endpoint host)"}, " +
        $"TlsCaCertificate={TlsCaCertificate ?? "(system roots)"}, TlsClientCertificate={TlsClientCertificate ?? "(none)"}, " +
        $"ConnectTimeout={ConnectTimeout}, CommandTimeout={CommandTimeout}, " +
        $"Connections={Connections}, KeyPrefix={KeyPrefix}, UncommittedChunkTtl={UncommittedChunkTtl}";

    /// <summary>
    /// Loads each TLS file that is set, so a missing or unreadable one stops the process at start with the setting's
    /// name rather than failing every handshake later.
    /// </summary>
    private void ValidateTlsFiles()
    {
        if (!UseTls)
        {
            foreach (var (value, name) in (ReadOnlySpan<(string?, string)>)[(TlsCaCertificate, nameof(TlsCaCertificate)), (TlsClientCertificate, nameof(TlsClientCertificate)), (TlsClientKey, nameof(TlsClientKey))])
            {
                if (!string.IsNullOrEmpty(value))
                {
                    throw new ArgumentException($"{name} is set but {nameof(UseTls)} is false: set {nameof(UseTls)}=true.", name);
                }
            }

            return;
        }

        if (!string.IsNullOrEmpty(TlsClientKey) && string.IsNullOrEmpty(TlsClientCertificate))
        {
            throw new ArgumentException($"{nameof(TlsClientKey)} is set without {nameof(TlsClientCertificate)}.", nameof(TlsClientKey));
        }

        if (!string.IsNullOrEmpty(TlsCaCertificate))
        {
            LoadCaCertificate().Dispose();
        }

        if (!string.IsNullOrEmpty(TlsClientCertificate))
        {
            RequireFile(TlsClientCertificate, nameof(TlsClientCertificate));
            if (!string.IsNullOrEmpty(TlsClientKey))
            {
                RequireFile(TlsClientKey, nameof(TlsClientKey));
            }

            try
            {
                X509Certificate2.CreateFromPemFile(TlsClientCertificate, TlsClientKey).Dispose();
            }
            catch (CryptographicException e)
            {
                throw new ArgumentException(
                    $"{nameof(TlsClientCertificate)} '{TlsClientCertificate}' and {nameof(TlsClientKey)} '{TlsClientKey ?? "(same file)"}' are not a PEM certificate and its unencrypted private key: {e.Message}",
                    nameof(TlsClientCertificate),
                    e);
            }
        }
    }

    /// <summary>The certificate in <see cref="TlsCaCertificate"/> (the first, if the file holds several).</summary>
    internal X509Certificate2 LoadCaCertificate()
    {
        RequireFile(TlsCaCertificate!, nameof(TlsCaCertificate));
        try
        {
            return X509CertificateLoader.LoadCertificateFromFile(TlsCaCertificate!);
        }
        catch (CryptographicException e)
        {
            throw new ArgumentException($"{nameof(TlsCaCertificate)} '{TlsCaCertificate}' is not a PEM certificate: {e.Message}", nameof(TlsCaCertificate), e);
        }
    }

    private static void RequireFile(string path, string name)
    {
        if (!File.Exists(path))
        {
            throw new ArgumentException($"{name}: no file at '{path}'.", name);
        }
    }

    // StackExchange.Redis takes whole milliseconds as int.
    private static void ValidateMilliseconds(TimeSpan value, string name)
    {
        if (value < TimeSpan.FromMilliseconds(1) || value.TotalMilliseconds > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be between 1 ms and {int.MaxValue} ms.");
        }
    }
}

/// <summary>Checks <see cref="RedisStoreOptions"/> at start (ValidateOnStart).</summary>
public sealed class RedisStoreOptionsValidator : IValidateOptions<RedisStoreOptions>
{
    public ValidateOptionsResult Validate(string? name, RedisStoreOptions options)
    {
        try
        {
            options.Validate();
            return ValidateOptionsResult.Success;
        }
        catch (ArgumentException e)
        {
            return ValidateOptionsResult.Fail($"{RedisStoreOptions.SectionName}: {e.Message}");
        }
    }
}
