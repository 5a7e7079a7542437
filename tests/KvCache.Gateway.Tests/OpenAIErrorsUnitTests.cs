using System.Text.Json;
using Grpc.Core;
using KvCache.Gateway.OpenAI;
using KvCache.Silo.Sessions;
using StackExchange.Redis;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>What each failure becomes on the OpenAI-compatible API: HTTP status, OpenAI error type and code, bounded message.</summary>
public sealed class OpenAIErrorsUnitTests
{
    public static TheoryData<Exception, int, string, string> Failures() => new()
    {
        { new RpcException(new Status(StatusCode.Unauthenticated, "Unknown API key.")), 401, "invalid_request_error", "invalid_api_key" },
        { new RpcException(new Status(StatusCode.ResourceExhausted, "quota")), 429, "rate_limit_error", "rate_limit_exceeded" },
        { new SessionException(SessionErrorCode.ResourceExhausted, "cache memory full"), 429, "rate_limit_error", "rate_limit_exceeded" },
        { new SessionException(SessionErrorCode.NotFound, "Session 's' does not exist."), 404, "invalid_request_error", "not_found" },
        { new SessionException(SessionErrorCode.InvalidArgument, "bad"), 400, "invalid_request_error", "invalid_value" },
        { new SessionException(SessionErrorCode.FailedPrecondition, "no chat template"), 400, "invalid_request_error", "failed_precondition" },
        { new SessionException(SessionErrorCode.AlreadyExists, "exists"), 409, "invalid_request_error", "conflict" },
        { new SessionException(SessionErrorCode.Aborted, "at position 9, not the expected 7"), 409, "invalid_request_error", "conflict" },
        { new SessionException(SessionErrorCode.Unavailable, "silo down"), 503, "server_error", "unavailable" },
        { new SessionException(SessionErrorCode.Moved, "moved"), 503, "server_error", "unavailable" },
        { new RedisConnectionException(ConnectionFailureType.UnableToConnect, "down"), 503, "server_error", "unavailable" },
        { new JsonException("bad"), 400, "invalid_request_error", "invalid_json" },
        { OpenAIException.NotFound("No response."), 404, "invalid_request_error", "not_found" },
    };

    [Theory]
    [MemberData(nameof(Failures))]
    public void Each_failure_has_its_status_type_and_code(Exception failure, int status, string type, string code)
    {
        var (actualStatus, body) = OpenAIErrors.Describe(failure)!.Value;
        Assert.Equal((status, type, code), (actualStatus, body.Type, body.Code));
    }

    [Fact]
    public void A_bug_is_not_described_to_the_caller() => Assert.Null(OpenAIErrors.Describe(new InvalidOperationException("internal detail")));

    [Fact]
    public void Quoted_values_and_messages_are_bounded()
    {
        var quoted = OpenAIErrors.Quote(new string('x', 10_000));
        Assert.Equal(OpenAIErrors.MaxQuotedLength + 3, quoted.Length);
        Assert.Equal("'abc'", OpenAIErrors.Quote("abc"));

        var (_, body) = OpenAIErrors.Describe(new RpcException(new Status(StatusCode.InvalidArgument, new string('y', 10_000))))!.Value;
        Assert.InRange(body.Message.Length, 1, 513);
    }
}
