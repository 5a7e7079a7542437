using Microsoft.Extensions.Logging;

namespace KvCache.Silo.Cluster.Membership.Internal;

internal static partial class MembershipLog
{
    [LoggerMessage(400, LogLevel.Information, "Silo {Silo} is {Status} in the membership table")]
    public static partial void StatusChanged(ILogger logger, SiloAddress silo, SiloStatus status);

    [LoggerMessage(401, LogLevel.Warning, "Declared silo {Silo} dead: no heartbeat since {IAmAliveTime:O} (lease {Lease})")]
    public static partial void DeclaredOtherDead(ILogger logger, SiloAddress silo, DateTimeOffset iAmAliveTime, TimeSpan lease);

    [LoggerMessage(402, LogLevel.Error, "Silo {Silo} stops serving: {Reason}")]
    public static partial void SelfDead(ILogger logger, SiloAddress silo, string reason);

    [LoggerMessage(403, LogLevel.Warning, "Membership heartbeat of silo {Silo} failed")]
    public static partial void HeartbeatFailed(ILogger logger, Exception exception, SiloAddress silo);
}
