using Microsoft.Extensions.Logging;

namespace KvCache.Transport.Internal;

internal static partial class TransportLog
{
    [LoggerMessage(1, LogLevel.Error, "gRPC handler for {Method} threw an unexpected exception.")]
    public static partial void HandlerFailed(ILogger logger, string method, Exception exception);

    [LoggerMessage(2, LogLevel.Debug, "gRPC call {Method} exceeded its deadline.")]
    public static partial void DeadlineExceeded(ILogger logger, string method);

    [LoggerMessage(3, LogLevel.Debug, "gRPC call {Method} was cancelled by the client.")]
    public static partial void CallCancelled(ILogger logger, string method);

    [LoggerMessage(4, LogLevel.Debug, "gRPC call {Method} rejected: {StatusCode} {Detail}")]
    public static partial void CallRejected(ILogger logger, string method, StatusCode statusCode, string detail);

    [LoggerMessage(5, LogLevel.Debug, "gRPC request for unknown path {Path}.")]
    public static partial void Unimplemented(ILogger logger, string path);
}
