using System.Globalization;

namespace KvCache.Silo.Cluster.Membership;

/// <summary>
/// A silo's identity (Orleans' SiloAddress): its endpoint plus a generation that differs on every start, so a
/// restarted silo on the same endpoint is a different member and its predecessor's rows stay dead.
/// </summary>
public readonly record struct SiloAddress
{
    public SiloAddress(string endpoint, long generation)
    {
        ValidateEndpoint(endpoint);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(generation);
        Endpoint = endpoint;
        Generation = generation;
    }

    /// <summary><c>host:port</c> (or a name) the silo is reached at.</summary>
    public string Endpoint { get; }

    public long Generation { get; }

    /// <summary>A generation for a silo starting now: milliseconds since the Unix epoch.</summary>
    public static long NewGeneration(TimeProvider time) => time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Parses the <see cref="ToString"/> form <c>endpoint@generation</c>.</summary>
    public static SiloAddress Parse(string text)
    {
        ArgumentException.ThrowIfNullOrEmpty(text);
        int at = text.LastIndexOf('@');
        return at > 0 && long.TryParse(text.AsSpan(at + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long generation)
            ? new SiloAddress(text[..at], generation)
            : throw new FormatException($"'{text}' is not a silo address (endpoint@generation).");
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Endpoint}@{Generation}");

    /// <summary>Endpoints become parts of Redis values and fields: no separators, spaces or control characters.</summary>
    private static void ValidateEndpoint(string endpoint)
    {
        ArgumentException.ThrowIfNullOrEmpty(endpoint);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(endpoint.Length, 256, nameof(endpoint));
        foreach (char c in endpoint)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':' or '[' or ']'))
            {
                throw new ArgumentException($"Endpoint '{endpoint}' has character '{c}'; only letters, digits and '-', '_', '.', ':', '[', ']' are allowed.", nameof(endpoint));
            }
        }
    }
}
