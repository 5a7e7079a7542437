using System.ComponentModel.DataAnnotations;

namespace KvCache.Silo.Storage.Redis;

/// <summary>How to reach one Redis server. <see cref="Password"/> is a secret: never printed.</summary>
public class RedisClientOptions : IValidatableObject
{
    /// <summary>"host:port".</summary>
    public string Endpoint { get; set; } = "127.0.0.1:6379";

    /// <summary>ACL user for AUTH; null for the default user.</summary>
    public string? User { get; set; }

    /// <summary>Sent with AUTH on every connection; null or empty for none.</summary>
    public string? Password { get; set; }

    /// <summary>Logical database selected on every connection.</summary>
    public int Database { get; set; }

    public bool UseTls { get; set; }

    /// <summary>Name the server certificate must carry; the endpoint's host if null.</summary>
    public string? TlsTargetHost { get; set; }

    /// <summary>Limit on TCP connect, TLS handshake, AUTH and SELECT together.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Multiplexed connections; commands are spread over them. One reader per connection, so two let bulk
    /// transfers use two cores.
    /// </summary>
    public int Connections { get; set; } = 2;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public virtual void Validate()
    {
        _ = ParseEndpoint();
        ArgumentOutOfRangeException.ThrowIfNegative(Database);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ConnectTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Connections);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Connections, 64);
    }

    /// <summary>Lets ValidateDataAnnotations() run <see cref="Validate()"/> at start.</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        string? error = null;
        try
        {
            Validate();
        }
        catch (ArgumentException e)
        {
            error = e.Message;
        }

        return error is null ? [] : [new ValidationResult(error)];
    }

    /// <summary>Host and port of <see cref="Endpoint"/>.</summary>
    public (string Host, int Port) ParseEndpoint()
    {
        int colon = Endpoint?.LastIndexOf(':') ?? -1;
        if (colon <= 0 || !int.TryParse(Endpoint.AsSpan(colon + 1), out int port) || port is <= 0 or > 65535)
        {
            throw new ArgumentException($"Redis endpoint '{Endpoint}' is not 'host:port'.", nameof(Endpoint));
        }

        return (Endpoint![..colon].Trim('[', ']'), port);
    }

    public override string ToString() =>
        $"Endpoint={Endpoint}, User={User ?? "(default)"}, Password={(string.IsNullOrEmpty(Password) ? "(none)" : "***")}, " +
        $"Database={Database}, UseTls={UseTls}, ConnectTimeout={ConnectTimeout}, Connections={Connections}";
}
