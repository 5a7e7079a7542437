using KvCache.Silo.Cluster.Membership;
using KvCache.Transport;
using Microsoft.Extensions.Logging;

namespace KvCache.Gateway.Routing.Internal;

internal static partial class RoutingLog
{
    [LoggerMessage(600, LogLevel.Warning, "Silo {Silo} failed a forwarded call ({Code}: {Detail}); waiting for its sessions to move")]
    public static partial void SiloFailed(ILogger logger, SiloAddress silo, StatusCode code, string detail);

    [LoggerMessage(601, LogLevel.Information, "Decode of session {Tenant}/{SessionId} broke on silo {Silo} after {Sent} tokens; continuing on the new owner")]
    public static partial void DecodeForwarded(ILogger logger, string tenant, string sessionId, SiloAddress silo, int sent);

    [LoggerMessage(602, LogLevel.Information, "Silos no longer live: {Silos}")]
    public static partial void SilosLost(ILogger logger, string silos);

    [LoggerMessage(603, LogLevel.Warning, "Could not read membership; routing on the last view")]
    public static partial void RefreshFailed(ILogger logger, Exception exception);

    [LoggerMessage(604, LogLevel.Debug, "Silo {Silo} did not report its load: {Code}")]
    public static partial void StatsFailed(ILogger logger, SiloAddress silo, StatusCode code);

    [LoggerMessage(605, LogLevel.Error, "Silo {Silo} refused the cluster secret: the gateway's Cluster:Secret differs from the silos'")]
    public static partial void SecretRefused(ILogger logger, SiloAddress silo);
}
