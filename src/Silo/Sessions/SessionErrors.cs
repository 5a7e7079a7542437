using KvCache.Silo.Cluster.Membership;

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

    /// <summary>Another live silo owns the session (<see cref="SessionException.Owner"/>): call that one.</summary>
    NotOwner,
}

/// <summary>A session call failed for a reason the caller can act on.</summary>
public sealed class SessionException(SessionErrorCode code, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public SessionErrorCode Code { get; } = code;

    /// <summary>With <see cref="SessionErrorCode.NotOwner"/>: the silo that owns the session, if known.</summary>
    public SiloAddress? Owner { get; init; }

    internal static SessionException NotFound(string sessionId) =>
        new(SessionErrorCode.NotFound, $"Session '{sessionId}' does not exist.");

    internal static SessionException NotOwner(string sessionId, SiloAddress owner) =>
        new(SessionErrorCode.NotOwner, $"Session '{sessionId}' is active on silo {owner}.") { Owner = owner };
}
