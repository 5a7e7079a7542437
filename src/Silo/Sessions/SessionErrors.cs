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

    /// <summary>
    /// The activation that took the call lost the session to a newer one (a migration, or a takeover after its silo
    /// was declared dead) before doing anything: the caller may send the call again, and it reaches the new one.
    /// </summary>
    Moved,

    /// <summary>A compare-and-append found the session at another position than expected: nothing was done; the caller
    /// reads the session again and decides (gRPC's ABORTED, for a failed test-and-set).</summary>
    /// <remarks>Last: codes cross grain calls by value, so the older ones keep theirs across a rolling upgrade.</remarks>
    Aborted,
}

/// <summary>A session call failed for a reason the caller can act on; it crosses grain calls intact.</summary>
/// <remarks>Grains throw it without an inner exception (they log the cause): Orleans would otherwise have to serialize
/// the inner one's type, e.g. a Redis exception, and the call would fail with a codec error instead.</remarks>
[GenerateSerializer]
public sealed class SessionException(SessionErrorCode code, string message, Exception? inner = null)
    : Exception(message, inner)
{
    [Id(0)]
    public SessionErrorCode Code { get; } = code;

    internal static SessionException NotFound(string sessionId) =>
        new(SessionErrorCode.NotFound, $"Session '{Internal.SessionInfos.Quote(sessionId)}' does not exist.");
}
