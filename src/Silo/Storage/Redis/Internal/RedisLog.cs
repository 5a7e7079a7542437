using Microsoft.Extensions.Logging;

namespace KvCache.Silo.Storage.Redis.Internal;

internal static partial class RedisLog
{
    [LoggerMessage(1, LogLevel.Information, "Connected to Redis at {Endpoint} (database {Database}, TLS {UseTls})")]
    public static partial void Connected(ILogger logger, string endpoint, int database, bool useTls);

    [LoggerMessage(2, LogLevel.Warning, "Could not connect to Redis at {Endpoint}")]
    public static partial void ConnectFailed(ILogger logger, string endpoint, Exception exception);

    [LoggerMessage(3, LogLevel.Warning, "Lost the connection to Redis at {Endpoint}; the next command reconnects")]
    public static partial void ConnectionLost(ILogger logger, string endpoint, Exception exception);
}
