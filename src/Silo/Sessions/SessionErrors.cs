namespace KvCache.Silo.Sessions;

/// <summary>Why a session call failed; the gateway maps each to a gRPC status code.</summary>
public enum SessionErrorCode
{
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
}

/// <summary>A session call failed for a reason the caller can act on.</summary>
public sealed class SessionException(SessionErrorCode code, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public SessionErrorCode Code { get; } = code;

    internal static SessionException NotFound(string sessionId) =>
        new(SessionErrorCode.NotFound, $"Session '{sessionId}' does not exist.");
}
