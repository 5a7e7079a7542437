using System.Text.Json;
using Grpc.Core;
using KvCache.Silo.Sessions;
using StackExchange.Redis;

namespace KvCache.Gateway.OpenAI;

/// <summary>A request the OpenAI-compatible API refuses, with its HTTP status and OpenAI's error type and code.</summary>
internal sealed class OpenAIException(int status, string type, string? code, string message, string? param = null) : Exception(message)
{
    public int Status { get; } = status;

    public string Type { get; } = type;

    public string? Code { get; } = code;

    public string? Param { get; } = param;

    public static OpenAIException Invalid(string message, string? param = null) =>
        new(StatusCodes.Status400BadRequest, "invalid_request_error", "invalid_value", message, param);

    public static OpenAIException NotFound(string message, string? param = null) =>
        new(StatusCodes.Status404NotFound, "invalid_request_error", "not_found", message, param);
}

/// <summary>
/// Turns what the session service, the quotas, the authenticator and the stores throw into OpenAI's error body
/// (<c>{"error": {"message", "type", "code", "param"}}</c>) and its HTTP status, as the gRPC surface maps them to
/// status codes.
/// </summary>
internal static class OpenAIErrors
{
    /// <summary>Caller values quoted in a message are cut to this many characters.</summary>
    public const int MaxQuotedLength = 64;

    /// <summary>Longest message sent back: session and quota messages are bounded, this keeps every one so.</summary>
    private const int MaxMessageLength = 512;

    /// <summary>A caller's value as a message quotes it: at most <see cref="MaxQuotedLength"/> characters.</summary>
    public static string Quote(string? value) =>
        value is null ? "null" : value.Length <= MaxQuotedLength ? $"'{value}'" : $"'{value[..MaxQuotedLength]}…'";

    /// <summary>The error for <paramref name="exception"/>, or null for one that is not the caller's to see (a bug).</summary>
    public static (int Status, ErrorBody Body)? Describe(Exception exception) => exception switch
    {
        OpenAIException e => (e.Status, Body(e.Message, e.Type, e.Code, e.Param)),
        JsonException or BadHttpRequestException => (StatusCodes.Status400BadRequest, Body("The request body is not valid JSON for this endpoint.", "invalid_request_error", "invalid_json", null)),
        RpcException e => FromStatus(e.StatusCode, e.Status.Detail),
        SessionException e => e.Code switch
        {
            SessionErrorCode.NotFound => FromStatus(StatusCode.NotFound, e.Message),
            SessionErrorCode.AlreadyExists => FromStatus(StatusCode.AlreadyExists, e.Message),
            SessionErrorCode.InvalidArgument => FromStatus(StatusCode.InvalidArgument, e.Message),
            SessionErrorCode.FailedPrecondition => FromStatus(StatusCode.FailedPrecondition, e.Message),
            SessionErrorCode.ResourceExhausted => FromStatus(StatusCode.ResourceExhausted, e.Message),
            SessionErrorCode.Aborted => FromStatus(StatusCode.Aborted, e.Message),
            _ => FromStatus(StatusCode.Unavailable, e.Message),
        },
        RedisException => FromStatus(StatusCode.Unavailable, "The response store is unavailable; retry."),
        _ => null,
    };

    public static ErrorBody Internal() => Body("The server failed to handle the request.", "server_error", "internal_error", null);

    private static (int, ErrorBody) FromStatus(StatusCode code, string message) => code switch
    {
        StatusCode.Unauthenticated => (StatusCodes.Status401Unauthorized, Body(message, "invalid_request_error", "invalid_api_key", null)),
        StatusCode.PermissionDenied => (StatusCodes.Status403Forbidden, Body(message, "invalid_request_error", "permission_denied", null)),
        StatusCode.NotFound => (StatusCodes.Status404NotFound, Body(message, "invalid_request_error", "not_found", null)),
        StatusCode.InvalidArgument or StatusCode.OutOfRange => (StatusCodes.Status400BadRequest, Body(message, "invalid_request_error", "invalid_value", null)),
        StatusCode.ResourceExhausted => (StatusCodes.Status429TooManyRequests, Body(message, "rate_limit_error", "rate_limit_exceeded", null)),
        // As Google's HTTP mapping of gRPC codes: the request cannot work on this model or session as it is.
        StatusCode.FailedPrecondition => (StatusCodes.Status400BadRequest, Body(message, "invalid_request_error", "failed_precondition", null)),
        StatusCode.AlreadyExists or StatusCode.Aborted => (StatusCodes.Status409Conflict, Body(message, "invalid_request_error", "conflict", null)),
        StatusCode.Unavailable or StatusCode.DeadlineExceeded => (StatusCodes.Status503ServiceUnavailable, Body(message, "server_error", "unavailable", null)),
        _ => (StatusCodes.Status500InternalServerError, Internal()),
    };

    private static ErrorBody Body(string message, string type, string? code, string? param) =>
        new(message.Length <= MaxMessageLength ? message : message[..MaxMessageLength] + "…", type, code, param);
}
