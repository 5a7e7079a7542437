using KvCache.Silo.Storage.Redis.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace KvCache.Silo.Storage.Redis;

/// <summary>
/// The connections to the spill store's Redis: <see cref="RedisStoreOptions.Connections"/> StackExchange.Redis
/// multiplexers built from one <see cref="StackExchange.Redis.ConfigurationOptions"/>, over which the store
/// spreads its operations. One per process (a DI singleton); it logs connection loss and recovery.
/// </summary>
/// <remarks>
/// Failures surface as exceptions, never as waits: a Redis that is down at start is not fatal (construction
/// completes and the multiplexers keep reconnecting), but while no connection is up every call fails at once
/// with <see cref="RedisConnectionException"/> (nothing is queued to be sent later), a call whose connection
/// drops fails with it, and one without a reply within <see cref="RedisStoreOptions.CommandTimeout"/> fails with
/// <see cref="RedisTimeoutException"/>. Callers map both to UNAVAILABLE.
/// </remarks>
public sealed class RedisConnection : IAsyncDisposable, IDisposable
{
    private readonly ConfigurationOptions _configuration;
    private readonly ConnectionMultiplexer[] _multiplexers;
    private readonly IDatabase[] _databases;
    private readonly string _description;
    private readonly ILogger _logger;
    private uint _next;

    public RedisConnection(IOptions<RedisStoreOptions> options, ILogger<RedisConnection>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Value;
        o.Validate();
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _configuration = CreateConfiguration(o);
        _description = $"Redis at {o.Endpoint} (database {o.Database}, user {o.User ?? "(default)"}, {DescribeTls(o)}, {o.Connections} connections)";

        // All at once, so a Redis that is down costs one connect timeout at start, not one per connection.
        _multiplexers = Task.WhenAll(Enumerable.Range(0, o.Connections).Select(_ => ConnectionMultiplexer.ConnectAsync(_configuration.Clone())))
            .GetAwaiter().GetResult();
        _databases = [.. _multiplexers.Select(m => m.GetDatabase(o.Database))];
        foreach (var multiplexer in _multiplexers)
        {
            multiplexer.ConnectionFailed += (_, e) => RedisLog.ConnectionFailed(_logger, this, e.FailureType, e.Exception);
            multiplexer.ConnectionRestored += (_, _) => RedisLog.ConnectionRestored(_logger, this);
        }

        if (IsConnected)
        {
            RedisLog.Connected(_logger, this);
        }
        else
        {
            RedisLog.NotConnected(_logger, this, WhyNotConnected());
        }
    }

    /// <summary>
    /// A copy of the settings the multiplexers were built from (endpoint, credentials, TLS, timeouts, reconnect
    /// policy), for components that make their own multiplexer to the same Redis (Orleans' Redis clustering).
    /// Each read returns a new copy, which the caller may change.
    /// </summary>
    public ConfigurationOptions ConfigurationOptions => _configuration.Clone();

    /// <summary>The first multiplexer, for small shared uses (a health check, a published figure).</summary>
    public IConnectionMultiplexer Multiplexer => _multiplexers[0];

    /// <summary>Whether every multiplexer is connected now.</summary>
    public bool IsConnected => _multiplexers.All(m => m.IsConnected);

    /// <summary>The database of the next multiplexer in turn: every operation takes one, so they spread evenly.</summary>
    internal IDatabase NextDatabase() => _databases[(int)(Interlocked.Increment(ref _next) % (uint)_databases.Length)];

    /// <summary>Server, database, user, TLS and connection count; never the password.</summary>
    public override string ToString() => _description;

    public void Dispose()
    {
        foreach (var multiplexer in _multiplexers)
        {
            multiplexer.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var multiplexer in _multiplexers)
        {
            await multiplexer.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The innermost error a call gets now (a refused connection, a rejected certificate, a failed AUTH), so the log
    /// says why at start: the multiplexers report failures of their first connect to no handler.
    /// </summary>
    private string WhyNotConnected()
    {
        RedisException? last = null;
        for (int attempt = 0; attempt < 10; attempt++)
        {
            if (_multiplexers.FirstOrDefault(m => !m.IsConnected) is not { } multiplexer)
            {
                return "connected since";
            }

            try
            {
                // Fails at once while disconnected (BacklogPolicy.FailFast).
                multiplexer.GetDatabase().Ping();
            }
            catch (RedisException e) when (e.InnerException is null)
            {
                // While a reconnect attempt is under way the error lacks its cause: ask again shortly.
                last = e;
                Thread.Sleep(50);
            }
            catch (RedisException e)
            {
                return e.GetBaseException().Message;
            }
        }

        return last!.Message;
    }

    private static string DescribeTls(RedisStoreOptions o) => !o.UseTls
        ? "no TLS"
        : $"TLS to {o.TlsTargetHost ?? "the endpoint's host"} trusting {(string.IsNullOrEmpty(o.TlsCaCertificate) ? "the system's roots" : $"the system's roots and {o.TlsCaCertificate}")}" +
          (string.IsNullOrEmpty(o.TlsClientCertificate) ? "" : $", presenting {o.TlsClientCertificate}");

    internal static ConfigurationOptions CreateConfiguration(RedisStoreOptions o)
    {
        var (host, port) = o.ParseEndpoint();
        var configuration = new ConfigurationOptions
        {
            EndPoints = { { host, port } },
            User = o.User,
            Password = string.IsNullOrEmpty(o.Password) ? null : o.Password,
            DefaultDatabase = o.Database,
            Ssl = o.UseTls,
            SslHost = o.TlsTargetHost,
            ConnectTimeout = (int)o.ConnectTimeout.TotalMilliseconds,
            SyncTimeout = (int)o.CommandTimeout.TotalMilliseconds,
            AsyncTimeout = (int)o.CommandTimeout.TotalMilliseconds,

            // A Redis that starts late or restarts is reconnected within about a second (heartbeat), not after the
            // library's default back-off of several seconds.
            AbortOnConnectFail = false,
            ConnectRetry = 1,
            ReconnectRetryPolicy = new ExponentialRetry(250, 5000),

            // Fail a call at once while disconnected rather than queue it: the caller maps that to UNAVAILABLE.
            BacklogPolicy = BacklogPolicy.FailFast,
            ClientName = "kvcache-spill",
        };

        // StackExchange.Redis' own hooks: TrustIssuer accepts a chain to this CA only when the name matches and the
        // certificate is for server authentication; SetUserPemCertificate presents the client certificate.
        if (o.UseTls && !string.IsNullOrEmpty(o.TlsCaCertificate))
        {
            configuration.TrustIssuer(o.LoadCaCertificate());
        }

        if (o.UseTls && !string.IsNullOrEmpty(o.TlsClientCertificate))
        {
            configuration.SetUserPemCertificate(o.TlsClientCertificate, string.IsNullOrEmpty(o.TlsClientKey) ? null : o.TlsClientKey);
        }

        return configuration;
    }
}
