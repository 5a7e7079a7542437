using System.Security.Cryptography;
using System.Text;
using KvCache.Transport;

namespace KvCache.Silo.Cluster.Serving;

/// <summary>The metadata the gateway and a silo's internal endpoint (kvcache.internal.v1.Silo) agree on.</summary>
public static class SiloProtocol
{
    /// <summary>Request metadata carrying the cluster's shared secret.</summary>
    public const string SecretHeader = "x-kvcache-cluster-secret";

    /// <summary>
    /// Trailer of every failure the silo itself reports: a <see cref="Sessions.SessionErrorCode"/> name, or
    /// <see cref="SiloStopped"/>. A failure without it happened on the way (connection lost, process gone).
    /// </summary>
    public const string ErrorTrailer = "x-kvcache-error";

    /// <summary>With <see cref="Sessions.SessionErrorCode.NotOwner"/> (status ABORTED): the owning silo's address.</summary>
    public const string OwnerTrailer = "x-kvcache-owner";

    /// <summary>The silo stopped serving (declared dead, or shutting down): route elsewhere.</summary>
    public const string SiloStopped = "SiloStopped";

    /// <summary>Request headers that authenticate a gateway to a silo.</summary>
    public static Metadata Headers(string secret) => new() { { SecretHeader, secret } };

    /// <summary>Whether <paramref name="headers"/> carry <paramref name="secretHash"/>'s secret, compared in constant time.</summary>
    public static bool HasSecret(Metadata headers, ReadOnlySpan<byte> secretHash)
    {
        ArgumentNullException.ThrowIfNull(headers);
        var presented = headers.GetValue(SecretHeader);
        if (presented is null)
        {
            return false;
        }

        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(presented), hash);
        return CryptographicOperations.FixedTimeEquals(hash, secretHash);
    }
}
