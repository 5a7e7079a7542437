using System.Runtime.CompilerServices;
using Grpc.Core;
using KvCache.Client.Internal;
using Microsoft.Extensions.AI;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Client;

/// <summary>
/// <see cref="IChatClient"/> over the kvcache.v1 gRPC API. A conversation is a session whose KV cache the service
/// keeps between turns: <see cref="ChatOptions.ConversationId"/> is the session id, and a turn sends only what the
/// session does not hold yet.
/// </summary>
/// <remarks>
/// <para>Without a conversation id a call starts a new session (with <see cref="ChatOptions.Instructions"/> as its
/// system message) and returns its id as <see cref="ChatResponse.ConversationId"/>; pass it on the next turn. An
/// unknown conversation id creates a session with that id.</para>
/// <para>On an existing conversation the messages after the last assistant message are sent: the session already
/// holds everything up to its own last reply, so a caller may pass either only the new messages or the whole
/// history.</para>
/// </remarks>
public sealed class KvCacheChatClient : IChatClient
{
    private readonly V1.KvCache.KvCacheClient _client;
    private readonly KvCacheChatClientOptions _options;
    private readonly Metadata _headers = [];

    /// <param name="client">A client on a channel the caller owns (and disposes).</param>
    /// <param name="options">Settings; defaults when null.</param>
    public KvCacheChatClient(V1.KvCache.KvCacheClient client, KvCacheChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
        _options = options ?? new KvCacheChatClientOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.MaxAttempts, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.DefaultMaxOutputTokens, 1);
        if (_options.ApiKey is { Length: > 0 } key)
        {
            _headers.Add("authorization", $"Bearer {key}");
        }
    }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(
        IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages,
        ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var (session, isNew) = await OpenConversationAsync(options, cancellationToken);
        var append = new V1.AppendRequest { SessionId = session.Id, RequestId = NewRequestId(), TopLogprobs = 1 };
        append.Messages.Add(ChatMessages.ToSend(messages.ToList(), isNew ? options?.Instructions : null));
        if (append.Messages.Count == 0)
        {
            throw new ArgumentException(
                "There is no message to send: the conversation already holds every message given (the last one is the assistant's).",
                nameof(messages));
        }

        var appended = await _options.RetryAsync(() => _client.AppendAsync(append, _headers, cancellationToken: cancellationToken).ResponseAsync, cancellationToken);

        var decode = new V1.DecodeRequest
        {
            SessionId = session.Id,
            RequestId = NewRequestId(),
            MaxTokens = options?.MaxOutputTokens ?? _options.DefaultMaxOutputTokens,
            Sampling = new V1.SamplingParams
            {
                Temperature = options?.Temperature ?? _options.DefaultTemperature,
                TopP = options?.TopP ?? 0,
                TopK = options?.TopK ?? 0,
                Seed = options?.Seed is { } seed ? unchecked((ulong)seed) : 0,
            },
        };
        if (options?.StopSequences is { } stops)
        {
            decode.Stop.Add(stops);
        }

        var outputTokens = 0;
        var finish = V1.FinishReason.Unspecified;
        await using var stream = new ResumableDecode(_client, decode, _headers, _options, cancellationToken);
        while (await stream.NextAsync() is { } token)
        {
            outputTokens++;
            finish = token.FinishReason;
            if (token.Text.Length > 0)
            {
                yield return Update(session, decode.RequestId, [new TextContent(token.Text)]);
            }
        }

        var last = Update(session, decode.RequestId, [new UsageContent(new UsageDetails
        {
            InputTokenCount = appended.AppendedTokens,
            CachedInputTokenCount = appended.Position - appended.AppendedTokens,
            OutputTokenCount = outputTokens,
            TotalTokenCount = appended.AppendedTokens + outputTokens,
        })]);
        last.FinishReason = finish is V1.FinishReason.MaxTokens or V1.FinishReason.MaxPosition ? ChatFinishReason.Length : ChatFinishReason.Stop;
        yield return last;
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        if (serviceType == typeof(ChatClientMetadata))
        {
            return new ChatClientMetadata("kvcache", defaultModelId: _options.Model);
        }

        return serviceType.IsInstanceOfType(this) ? this : serviceType.IsInstanceOfType(_client) ? _client : null;
    }

    /// <summary>Nothing to release: the channel belongs to the caller.</summary>
    public void Dispose()
    {
    }

    /// <summary>The conversation's session, and whether it holds nothing yet (so the whole history is sent).</summary>
    private async Task<(V1.Session Session, bool IsNew)> OpenConversationAsync(ChatOptions? options, CancellationToken cancellationToken)
    {
        var create = new V1.CreateSessionRequest { Model = options?.ModelId ?? _options.Model ?? "", Codec = _options.Codec ?? "" };
        if (options?.ConversationId is not { Length: > 0 } id)
        {
            return (await _options.RetryAsync(() => _client.CreateSessionAsync(create, _headers, cancellationToken: cancellationToken).ResponseAsync, cancellationToken), true);
        }

        try
        {
            var session = await _options.RetryAsync(
                () => _client.GetSessionAsync(new V1.GetSessionRequest { SessionId = id }, _headers, cancellationToken: cancellationToken).ResponseAsync,
                cancellationToken);
            return (session, session.Position == 0);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            create.SessionId = id;
            try
            {
                return (await _options.RetryAsync(() => _client.CreateSessionAsync(create, _headers, cancellationToken: cancellationToken).ResponseAsync, cancellationToken), true);
            }
            catch (RpcException race) when (race.StatusCode == StatusCode.AlreadyExists)
            {
                // Another caller created it first: continue that conversation.
                return await OpenConversationAsync(options, cancellationToken);
            }
        }
    }

    private static ChatResponseUpdate Update(V1.Session session, string responseId, IList<AIContent> contents) => new(ChatRole.Assistant, contents)
    {
        ConversationId = session.Id,
        ResponseId = responseId,
        MessageId = responseId,
        ModelId = session.Model,
        CreatedAt = DateTimeOffset.UtcNow,
    };

    private static string NewRequestId() => Guid.NewGuid().ToString("N");
}
