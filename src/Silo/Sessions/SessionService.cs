using System.Buffers.Text;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using KvCache.Silo.Hosting;
using KvCache.Silo.Migration;
using KvCache.Silo.Observability;
using KvCache.Silo.Storage;
using KvCache.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Sessions;

/// <summary>
/// <see cref="ISessionService"/> over Orleans: the same in the gateway's own silo (embedded mode) and through an
/// Orleans client to silo processes. Requests are checked here, before any grain is activated.
/// </summary>
/// <remarks>
/// A call that provably did nothing (<see cref="SessionErrorCode.Moved"/>: it reached an activation that was leaving)
/// is sent again until it reaches the session's new activation. Reads are sent again too when a silo fails under
/// them, and so are Appends, which always carry a request id (the caller's, else one of their own): the grain
/// applies an Append once. Other calls that may have changed the session (Create, Delete) are not: their caller gets
/// UNAVAILABLE. A Decode with a request id continues after a silo failure: the retry replays the request's tokens and
/// those the caller already has are skipped.
/// </remarks>
internal sealed class SessionService(
    IGrainFactory grains,
    IOptions<SiloOptions> siloOptions,
    IOptions<ClusterOptions> clusterOptions,
    SessionServiceMetrics metrics,
    TimeProvider time,
    ILogger<SessionService> logger) : ISessionService
{
    private const int MaxIdLength = 128;
    private const int MaxNameLength = 128;
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(100);

    private readonly SiloOptions _options = siloOptions.Value;
    private readonly TimeSpan _failoverTimeout = clusterOptions.Value.FailoverTimeout;

    public Task<SessionInfo> CreateAsync(string tenant, string? model, string? codec, string? sessionId, CancellationToken cancellationToken)
    {
        ValidateName(model, "model");
        ValidateName(codec, "codec");
        if (string.IsNullOrEmpty(sessionId))
        {
            sessionId = NewId("s-");
        }
        else
        {
            ValidateId(sessionId, "session_id");
        }

        var grain = Session(new SessionKey(tenant, sessionId));
        return CallAsync(() => grain.CreateAsync(model, codec, cancellationToken), retryOnFailure: false, cancellationToken);
    }

    public Task<SessionInfo> ForkAsync(SessionKey source, long position, CancellationToken cancellationToken)
    {
        ValidateKey(source);
        if (position < 0)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"A fork's position must be at least 0, not {position}.");
        }

        // The fork is a grain of the source's tenant: it can copy no other tenant's session.
        var grain = Session(new SessionKey(source.Tenant, NewId("s-")));
        return CallAsync(() => grain.ForkAsync(source.SessionId, position, cancellationToken), retryOnFailure: false, cancellationToken);
    }

    public async Task<AppendResult> AppendAsync(SessionKey key, AppendInput input, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        ValidateAppend(input);
        if (input.RequestId is { } requestId)
        {
            ValidateId(requestId, "request_id");
        }

        if (input.ExpectedPosition is < 0)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"expected_position must be at least 0, not {input.ExpectedPosition}.");
        }

        // With a request id the grain applies an Append once, so it is safe to send again when its silo fails.
        var sent = input.RequestId is null ? input with { RequestId = NewId("a-") } : input;
        var grain = Session(key);
        var result = await CallAsync(() => grain.AppendAsync(sent, cancellationToken), retryOnFailure: true, cancellationToken);

        // A replay of this service's own resend is the caller's first answer, not a repeat of an earlier request.
        return input.RequestId is null && result.Replayed ? result with { Replayed = false } : result;
    }

    public IAsyncEnumerable<DecodedToken> DecodeAsync(SessionKey key, DecodeRequestOptions options, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        if (options.MaxTokens < 1 || options.MaxTokens > _options.MaxDecodeTokens)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"max_tokens must be in [1, {_options.MaxDecodeTokens}], not {options.MaxTokens}.");
        }

        if (options.RequestId is not null)
        {
            ValidateId(options.RequestId, "request_id");
        }

        if (options.Stop is { Length: > 0 } stop && StopStrings.Validate(stop) is { } invalid)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, invalid);
        }

        var sampling = options.Sampling;
        if (!float.IsFinite(sampling.Temperature) || sampling.Temperature < 0 || sampling.TopK < 0
            || !float.IsFinite(sampling.TopP) || sampling.TopP < 0 || sampling.TopP > 1)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, "sampling needs temperature >= 0, top_k >= 0 and top_p in [0, 1].");
        }

        return DecodeResumingAsync(key, options, cancellationToken);
    }

    public Task<SessionInfo> GetAsync(SessionKey key, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        var tenant = Tenant(key.Tenant);
        return CallAsync(() => tenant.GetSessionAsync(key.SessionId), retryOnFailure: true, cancellationToken);
    }

    public Task<SessionInfo> SpillAsync(SessionKey key, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        var grain = Session(key);
        return CallAsync(() => grain.SpillAsync(cancellationToken), retryOnFailure: true, cancellationToken);
    }

    public Task DeleteAsync(SessionKey key, CancellationToken cancellationToken)
    {
        ValidateKey(key);
        var grain = Session(key);
        return CallAsync(
            async () =>
            {
                await grain.DeleteAsync(cancellationToken);
                return true;
            },
            retryOnFailure: false,
            cancellationToken);
    }

    public Task<SessionListPage> ListAsync(string tenant, int pageSize, string? pageToken, CancellationToken cancellationToken)
    {
        if (pageSize is < 0 or > 1000)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, "page_size must be in [0, 1000].");
        }

        if (!string.IsNullOrEmpty(pageToken))
        {
            ValidateId(pageToken, "page_token");
        }

        var grain = Tenant(tenant);
        return CallAsync(
            () => grain.ListSessionsAsync(pageSize == 0 ? 100 : pageSize, string.IsNullOrEmpty(pageToken) ? null : pageToken),
            retryOnFailure: true,
            cancellationToken);
    }

    public async Task<IReadOnlyList<ModelDescription>> ListModelsAsync(string tenant, CancellationToken cancellationToken)
    {
        var grain = Tenant(tenant);
        return await CallAsync(grain.ListModelsAsync, retryOnFailure: true, cancellationToken);
    }

    public Task<(MigrationResult Result, SessionInfo Session)> MigrateAsync(SessionKey key, string? targetSilo, CancellationToken cancellationToken)
    {
        if (key.Tenant.Length > MaxIdLength)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"tenant must be 1-{MaxIdLength} characters.");
        }

        ValidateKey(key);
        ValidateName(targetSilo, "target_silo");
        return CallAsync(() => SessionMigrations.MoveAsync(grains, key, string.IsNullOrEmpty(targetSilo) ? null : targetSilo, cancellationToken), retryOnFailure: false, cancellationToken);
    }

    private ISessionGrain Session(SessionKey key) => grains.GetGrain<ISessionGrain>(SessionGrainKey.Format(key));

    private ITenantSessionsGrain Tenant(string tenant) => grains.GetGrain<ITenantSessionsGrain>(tenant);

    /// <summary>
    /// Calls a grain: sends the call again while it is refused as <see cref="SessionErrorCode.Moved"/>, or (with
    /// <paramref name="retryOnFailure"/>) while its silo fails, until <see cref="ClusterOptions.FailoverTimeout"/>;
    /// any other failure than a session error becomes UNAVAILABLE.
    /// </summary>
    private async Task<T> CallAsync<T>(Func<Task<T>> call, bool retryOnFailure, CancellationToken cancellationToken)
    {
        var started = time.GetTimestamp();
        while (true)
        {
            Exception failure;
            try
            {
                return await call();
            }
            catch (Exception ex) when (MayResend(ex, cancellationToken))
            {
                failure = ex;
            }

            var moved = failure is SessionException;
            if (!(moved || retryOnFailure) || time.GetElapsedTime(started) > _failoverTimeout)
            {
                throw Unavailable(failure);
            }

            metrics.Failover();
            await Task.Delay(RetryDelay, time, cancellationToken);
        }
    }

    private async IAsyncEnumerable<DecodedToken> DecodeResumingAsync(
        SessionKey key,
        DecodeRequestOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var grain = Session(key);
        var started = time.GetTimestamp();
        var sent = 0;
        while (true)
        {
            // A retry with the same request id replays the request's tokens first: the caller has `sent` of them.
            var skip = sent;
            Exception? failure = null;
            var stream = grain.DecodeAsync(options, cancellationToken).GetAsyncEnumerator(cancellationToken);
            try
            {
                while (true)
                {
                    DecodedToken token;
                    try
                    {
                        if (!await stream.MoveNextAsync())
                        {
                            break;
                        }

                        token = stream.Current;
                    }
                    catch (Exception ex) when (MayResend(ex, cancellationToken))
                    {
                        failure = ex;
                        break;
                    }

                    if (skip > 0)
                    {
                        skip--;
                        continue;
                    }

                    sent++;
                    yield return token;
                }
            }
            finally
            {
                await DisposeQuietlyAsync(stream);
            }

            if (failure is null)
            {
                yield break;
            }

            // Without a request id only a refusal that did nothing may be sent again: otherwise the stream may have
            // produced a token the caller never saw, and a new request would continue past it.
            var resumable = options.RequestId is not null || (failure is SessionException && sent == 0);
            if (!resumable)
            {
                throw sent > 0
                    ? new SessionException(SessionErrorCode.Unavailable, "The session's silo failed mid-stream; send a request_id to make Decode resumable.", failure)
                    : Unavailable(failure);
            }

            if (time.GetElapsedTime(started) > _failoverTimeout)
            {
                throw Unavailable(failure);
            }

            SessionServiceLog.DecodeContinued(logger, key.Tenant, key.SessionId, sent, failure.Message);
            metrics.Failover();
            await Task.Delay(RetryDelay, time, cancellationToken);
        }
    }

    /// <summary>Whether a failed call may be sent again: not a session error the caller must see (only Moved is
    /// retried) and not the caller's own cancellation; anything else is the silo failing.</summary>
    private static bool MayResend(Exception failure, CancellationToken cancellationToken) => failure switch
    {
        SessionException session => session.Code == SessionErrorCode.Moved,
        OperationCanceledException => !cancellationToken.IsCancellationRequested,
        _ => true,
    };

    private static async ValueTask DisposeQuietlyAsync(IAsyncEnumerator<DecodedToken> stream)
    {
        try
        {
            await stream.DisposeAsync();
        }
        catch (Exception)
        {
            // Disposing tells the grain to drop the stream; a grain whose silo failed has nothing left to drop.
        }
    }

    private static SessionException Unavailable(Exception failure) => failure switch
    {
        SessionException moved => new SessionException(SessionErrorCode.Unavailable, moved.Message, moved),
        TimeoutException => new SessionException(SessionErrorCode.Unavailable, "The session's silo did not answer in time; retry.", failure),
        _ => new SessionException(SessionErrorCode.Unavailable, "The session's silo is unavailable; retry.", failure),
    };

    /// <summary>A random id in the id alphabet (base64url of 128 bits).</summary>
    private static string NewId(string prefix)
    {
        Span<byte> random = stackalloc byte[16];
        RandomNumberGenerator.Fill(random);
        Span<byte> text = stackalloc byte[Base64Url.GetEncodedLength(random.Length)];
        Base64Url.EncodeToUtf8(random, text);
        return prefix + System.Text.Encoding.ASCII.GetString(text);
    }

    /// <summary>Checks what can be checked before the session's model tokenizes: one kind of input, within limits.</summary>
    private void ValidateAppend(AppendInput input)
    {
        var kinds = (input.TokenIds.Length > 0 ? 1 : 0) + (string.IsNullOrEmpty(input.Text) ? 0 : 1) + (input.Messages.Length > 0 ? 1 : 0);
        if (kinds != 1)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, "Append takes exactly one of token_ids, text or messages.");
        }

        if (input.TokenIds.Length > _options.MaxAppendTokens)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"Append carries {input.TokenIds.Length} tokens; the limit is {_options.MaxAppendTokens}.");
        }

        // Every message renders to at least one token.
        if (input.Messages.Length > _options.MaxAppendTokens)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"Append carries {input.Messages.Length} messages; the limit is {_options.MaxAppendTokens} tokens.");
        }

        long chars = input.Text?.Length ?? 0;
        foreach (var message in input.Messages)
        {
            chars += message.Content.Length;
            if (message.Role.Length is 0 or > MaxNameLength)
            {
                throw new SessionException(SessionErrorCode.InvalidArgument, $"A message role must be 1-{MaxNameLength} characters.");
            }
        }

        if (chars > _options.MaxAppendTextChars)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"Append carries {chars} characters of text; the limit is {_options.MaxAppendTextChars}.");
        }
    }

    private static void ValidateKey(SessionKey key) => ValidateId(key.SessionId, "session_id");

    /// <summary>Ids become parts of grain and store keys and of log lines: a strict alphabet keeps them safe.</summary>
    private static void ValidateId(string id, string field)
    {
        if (id.Length is 0 or > MaxIdLength)
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"{field} must be 1-{MaxIdLength} characters.");
        }

        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                throw new SessionException(SessionErrorCode.InvalidArgument, $"{field} may only hold A-Z a-z 0-9 . _ -");
            }
        }
    }

    private static void ValidateName(string? name, string field)
    {
        if (name is { Length: > MaxNameLength })
        {
            throw new SessionException(SessionErrorCode.InvalidArgument, $"{field} is longer than {MaxNameLength} characters.");
        }
    }
}

internal static partial class SessionServiceLog
{
    [LoggerMessage(400, LogLevel.Warning, "Decode of session {Tenant}/{SessionId} broke after {Sent} tokens ({Reason}); continuing on the new owner")]
    public static partial void DecodeContinued(ILogger logger, string tenant, string sessionId, int sent, string reason);
}
