using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace KvCache.Silo.Storage.Redis.Internal;

/// <summary>What <see cref="RedisConnection"/> logs; it describes the server by <see cref="RedisConnection.ToString"/>, never the password.</summary>
internal static partial class RedisLog
{
    [LoggerMessage(1, LogLevel.Information, "Connected to {Connection}")]
    public static partial void Connected(ILogger logger, RedisConnection connection);

    [LoggerMessage(2, LogLevel.Warning, "Not connected to {Connection} yet ({Reason}); it keeps reconnecting, and calls fail until it is")]
    public static partial void NotConnected(ILogger logger, RedisConnection connection, string reason);

    [LoggerMessage(3, LogLevel.Warning, "Lost a connection to {Connection} ({FailureType}); calls in flight on it failed, it reconnects")]
    public static partial void ConnectionFailed(ILogger logger, RedisConnection connection, ConnectionFailureType failureType, Exception? exception);

    [LoggerMessage(4, LogLevel.Information, "Reconnected to {Connection}")]
    public static partial void ConnectionRestored(ILogger logger, RedisConnection connection);
}
