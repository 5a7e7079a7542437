using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using KvCache.Gateway.Auth;
using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Hosting;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using Microsoft.Extensions.Options;

namespace KvCache.Gateway.OpenAI;

/// <summary>
/// The OpenAI-compatible HTTP API: <c>/v1/models</c>, <c>/v1/responses</c> (stateful: a response id continues its
/// session) and <c>/v1/chat/completions</c> (stateless, or a reused session under a conversation key). Same tenants,
/// keys and quotas as the gRPC service.
/// </summary>
internal sealed partial class OpenAIEndpoints(
    TenantAuthenticator auth,
    ISessionService sessions,
    OpenAITurns turns,
    IOpenAIStore store,
    IOptions<SiloOptions> silo,
    IOptions<OpenAIOptions> options,
    TimeProvider time,
    ILogger<OpenAIEndpoints> logger)
{
    /// <summary>Longest conversation key accepted (it is hashed, never stored as is).</summary>
    private const int MaxConversationKeyLength = 256;

    private static readonly OpenAIJsonContext s_json = OpenAIJsonContext.Default;

    public static void Map(IEndpointRouteBuilder routes)
    {
        var v1 = routes.MapGroup("/v1");
        v1.MapGet("/models", (HttpContext http, OpenAIEndpoints api) => api.HandleAsync(http, api.ListModelsAsync));
        v1.MapPost("/responses", (HttpContext http, OpenAIEndpoints api) => api.HandleAsync(http, api.CreateResponseAsync));
        v1.MapGet("/responses/{id}", (HttpContext http, string id, OpenAIEndpoints api) => api.HandleAsync(http, tenant => api.GetResponseAsync(http, tenant, id)));
        v1.MapDelete("/responses/{id}", (HttpContext http, string id, OpenAIEndpoints api) => api.HandleAsync(http, tenant => api.DeleteResponseAsync(http, tenant, id)));
        v1.MapPost("/chat/completions", (HttpContext http, OpenAIEndpoints api) => api.HandleAsync(http, api.CreateChatCompletionAsync));
    }

    private async Task HandleAsync(HttpContext http, Func<HttpContext, string, Task> handler)
    {
        try
        {
            var authorization = http.Request.Headers.Authorization.ToString();
            await handler(http, auth.Authenticate(authorization.Length == 0 ? null : authorization));
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The caller left; nobody reads an answer.
        }
        catch (Exception ex)
        {
            await WriteErrorAsync(http, ex);
        }
    }

    private Task HandleAsync(HttpContext http, Func<string, Task> handler) => HandleAsync(http, (_, tenant) => handler(tenant));

    private async Task WriteErrorAsync(HttpContext http, Exception ex)
    {
        var described = OpenAIErrors.Describe(ex);
        if (described is null)
        {
            Log.Failed(logger, ex, http.Request.Path);
        }
        else if (described.Value.Status == StatusCodes.Status503ServiceUnavailable)
        {
            Log.Unavailable(logger, ex, http.Request.Path, described.Value.Body.Message);
        }

        var (status, body) = described ?? (StatusCodes.Status500InternalServerError, OpenAIErrors.Internal());
        if (http.Response.HasStarted)
        {
            // A stream already under way: the error is its last event (OpenAI's clients raise it).
            await WriteEventAsync(http, "error", new ResponseStreamEvent { Type = "error", Error = body }, s_json.ResponseStreamEvent);
            return;
        }

        http.Response.StatusCode = status;
        await WriteJsonAsync(http, new ErrorEnvelope(body), s_json.ErrorEnvelope);
    }

    private async Task ListModelsAsync(HttpContext http, string tenant)
    {
        var models = await sessions.ListModelsAsync(tenant, http.RequestAborted);
        await WriteJsonAsync(http, new ModelList("list", [.. models.Select(m => new ModelObject(m.Id, "model", 0, "kvcache"))]), s_json.ModelList);
    }

    private async Task GetResponseAsync(HttpContext http, string tenant, string id)
    {
        var stored = await store.GetResponseAsync(tenant, id, http.RequestAborted) ?? throw UnknownResponse(id, null);
        await WriteJsonAsync(http, stored.Response, s_json.ResponseObject);
    }

    private async Task DeleteResponseAsync(HttpContext http, string tenant, string id)
    {
        // The session stays: other responses of the conversation still continue from it.
        if (!await store.DeleteResponseAsync(tenant, id, http.RequestAborted))
        {
            throw UnknownResponse(id, null);
        }

        await WriteJsonAsync(http, new DeletedObject(id, "response", true), s_json.DeletedObject);
    }

    private async Task CreateResponseAsync(HttpContext http, string tenant)
    {
        var request = await ReadAsync(http, s_json.ResponseCreateRequest);
        var input = ParseResponseInput(request.Input);
        var messages = string.IsNullOrEmpty(request.Instructions) ? input : [new ChatTurn("system", request.Instructions), .. input];
        var id = NewId("resp_");
        var decode = DecodeOptions(request.MaxOutputTokens, "max_output_tokens", request.Temperature, request.TopP, seed: null, stop: null, requestId: id);
        var cancellationToken = http.RequestAborted;

        // Where the turn runs: the previous response's session when it still ends where that response left it;
        // otherwise (a later turn moved it on) a new session holding that session's tokens up to there.
        SessionInfo session;
        var created = true;
        SessionKey source = default;
        long? expected = null;
        if (request.PreviousResponseId is { } previousId)
        {
            var previous = await store.GetResponseAsync(tenant, previousId, cancellationToken) ?? throw UnknownResponse(previousId, "previous_response_id");
            source = new SessionKey(tenant, previous.SessionId);
            var current = await turns.FindSessionAsync(source, cancellationToken)
                ?? throw OpenAIException.NotFound($"The session of response {OpenAIErrors.Quote(previousId)} was deleted.", "previous_response_id");
            if (current.Position == previous.Position)
            {
                // Appended there only: a concurrent turn continuing the same response may land first, and this one forks.
                session = current;
                created = false;
                expected = previous.Position;
            }
            else
            {
                session = await turns.ForkAsync(source, previous.Position, cancellationToken);
                Log.Forked(logger, tenant, previousId, previous.SessionId, previous.Position, current.Position, session.Id);
            }
        }
        else
        {
            session = await turns.CreateSessionAsync(tenant, request.Model, null, null, cancellationToken);
        }

        var key = new SessionKey(tenant, session.Id);
        var keep = request.Store ?? true;
        var response = new ResponseObject
        {
            Id = id,
            CreatedAt = time.GetUtcNow().ToUnixTimeSeconds(),
            Status = "in_progress",
            Model = session.Model,
            PreviousResponseId = request.PreviousResponseId,
            Instructions = request.Instructions,
            Temperature = decode.Sampling.Temperature,
            TopP = decode.Sampling.TopP,
            MaxOutputTokens = request.MaxOutputTokens,
            Store = keep,
        };
        var item = new OutputMessage { Id = NewId("msg_"), Status = "in_progress" };
        var part = new OutputText { Text = "" };
        var stream = request.Stream ? new ResponseEvents(http, response, item, part) : null;
        async Task<TurnResult> RunAsync(SessionKey at, bool made, long? expectedPosition)
        {
            try
            {
                return await turns.RunAsync(at, messages, decode, expectedPosition, stream is null ? null : stream.DeltaAsync, cancellationToken);
            }
            catch when (made)
            {
                // Nothing will ever continue this session: give its quota share back.
                await turns.DeleteSessionAsync(at, CancellationToken.None);
                throw;
            }
        }

        TurnResult result;
        try
        {
            result = await RunAsync(key, created, expected);
        }
        catch (SessionException e) when (e.Code == SessionErrorCode.Aborted && expected is { } position)
        {
            // Another turn continued the same response first; nothing of this one was appended (nor streamed).
            session = await turns.ForkAsync(source, position, cancellationToken);
            Log.ForkedAfterRace(logger, tenant, request.PreviousResponseId!, source.SessionId, position, session.Id);
            key = new SessionKey(tenant, session.Id);
            created = true;
            result = await RunAsync(key, made: true, expectedPosition: null);
        }

        part.Text = result.Text;
        item.Status = result.HitLimit ? "incomplete" : "completed";
        item.Content = [part];
        response.Output = [item];
        response.Status = item.Status;
        response.IncompleteDetails = result.HitLimit ? new IncompleteDetails("max_output_tokens") : null;
        response.Usage = new ResponseUsage(
            result.InputEnd, new InputTokensDetails(result.HeldBefore), result.Generated, new OutputTokensDetails(0), result.InputEnd + result.Generated);
        response.Kvcache = new SessionRef(session.Id, result.End);

        if (keep)
        {
            await store.SaveResponseAsync(id, new StoredResponse(tenant, session.Id, result.End, response), CancellationToken.None);
        }
        else if (created)
        {
            // An unstored response cannot be continued: its new session has no further use.
            await turns.DeleteSessionAsync(key, CancellationToken.None);
        }

        if (stream is not null)
        {
            await stream.FinishAsync();
        }
        else
        {
            await WriteJsonAsync(http, response, s_json.ResponseObject);
        }
    }

    private async Task CreateChatCompletionAsync(HttpContext http, string tenant)
    {
        var request = await ReadAsync(http, s_json.ChatCompletionRequest);
        if (request.Messages is not { Count: > 0 })
        {
            throw OpenAIException.Invalid("messages must hold at least one message.", "messages");
        }

        if (request.N is not (null or 1))
        {
            throw OpenAIException.Invalid("Only n=1 is supported.", "n");
        }

        var messages = request.Messages.Select((m, i) => ParseMessage(m, $"messages[{i}]")).ToArray();
        var id = NewId("chatcmpl-");
        var decode = DecodeOptions(
            request.MaxCompletionTokens ?? request.MaxTokens, request.MaxCompletionTokens is null ? "max_tokens" : "max_completion_tokens",
            request.Temperature, request.TopP, request.Seed, ParseStop(request.Stop), requestId: id);
        var conversationKey = ConversationKey(http);
        var cancellationToken = http.RequestAborted;

        SessionInfo session;
        ChatTurn[] append = messages;
        StoredConversation? conversation = null;
        if (conversationKey is null)
        {
            session = await turns.CreateSessionAsync(tenant, request.Model, null, null, cancellationToken);
        }
        else
        {
            // Reused only when the request resends exactly what the session holds and the session still ends
            // there; any other history (edited, cut, another model) starts the conversation's session afresh.
            conversation = await store.GetConversationAsync(tenant, conversationKey, cancellationToken);
            var sessionId = "chat-" + OpenAIStoreKeys.ConversationHash(tenant, conversationKey);
            var current = await turns.FindSessionAsync(new SessionKey(tenant, sessionId), cancellationToken);
            if (conversation is not null && current is not null && current.Position == conversation.Position
                && (request.Model is null || request.Model == current.Model) && StartsWith(messages, conversation.Messages))
            {
                session = current;
                append = messages[conversation.Messages.Count..];
            }
            else
            {
                if (current is not null)
                {
                    await turns.DeleteSessionAsync(new SessionKey(tenant, sessionId), cancellationToken);
                }

                conversation = null;
                session = await turns.CreateSessionAsync(tenant, request.Model, null, sessionId, cancellationToken);
            }
        }

        var key = new SessionKey(tenant, session.Id);
        var created = time.GetUtcNow().ToUnixTimeSeconds();
        var stream = request.Stream ? new ChatEvents(http, id, created, session.Model) : null;
        var onText = stream is null ? null : (Func<string, Task>)stream.DeltaAsync;
        TurnResult result;
        if (conversationKey is null)
        {
            // Stateless: the whole history comes again next time.
            result = await RunOnceAsync(key);
        }
        else
        {
            try
            {
                // A reused session is appended to only where the conversation left it, so two requests of one key
                // at once cannot both land on it.
                result = await turns.RunAsync(key, append, decode, conversation?.Position, onText, cancellationToken);
            }
            catch (SessionException e) when (e.Code == SessionErrorCode.Aborted && conversation is not null)
            {
                // Another request of this key moved the session on first (nothing of this one was appended): this one
                // is answered from a temporary fork at the held history, and the conversation stays the other's.
                var fork = await turns.ForkAsync(key, conversation.Position, cancellationToken);
                Log.ChatForkedAfterRace(logger, tenant, session.Id, conversation.Position, fork.Id);
                conversationKey = null;
                result = await RunOnceAsync(new SessionKey(tenant, fork.Id));
            }
        }

        async Task<TurnResult> RunOnceAsync(SessionKey at)
        {
            try
            {
                return await turns.RunAsync(at, append, decode, expectedPosition: null, onText, cancellationToken);
            }
            finally
            {
                await turns.DeleteSessionAsync(at, CancellationToken.None);
            }
        }

        var usage = new ChatUsage(result.InputEnd, result.Generated, result.InputEnd + result.Generated, new PromptTokensDetails(result.HeldBefore));
        var finish = result.HitLimit ? "length" : "stop";
        var sessionRef = conversationKey is null ? null : new SessionRef(session.Id, result.End);
        if (conversationKey is not null)
        {
            List<StoredMessage> held = [.. messages.Select(m => new StoredMessage(m.Role, m.Content)), new("assistant", result.Text)];
            await store.SaveConversationAsync(conversationKey, new StoredConversation(tenant, session.Id, result.End, held), CancellationToken.None);
        }

        if (stream is not null)
        {
            await stream.FinishAsync(finish, request.StreamOptions?.IncludeUsage == true ? usage : null, sessionRef);
            return;
        }

        await WriteJsonAsync(
            http,
            new ChatCompletion
            {
                Id = id,
                Object = "chat.completion",
                Created = created,
                Model = session.Model,
                Choices = [new ChatChoice { Index = 0, Message = new ChatMessageOut("assistant", result.Text), FinishReason = finish }],
                Usage = usage,
                Kvcache = sessionRef,
            },
            s_json.ChatCompletion);
    }

    private string? ConversationKey(HttpContext http)
    {
        var value = http.Request.Headers[options.Value.ConversationHeader].ToString();
        if (value.Length == 0)
        {
            return null;
        }

        return value.Length <= MaxConversationKeyLength
            ? value
            : throw OpenAIException.Invalid($"The {options.Value.ConversationHeader} header is longer than {MaxConversationKeyLength} characters.");
    }

    private static bool StartsWith(ChatTurn[] messages, List<StoredMessage> held)
    {
        if (held.Count >= messages.Length)
        {
            return false;
        }

        for (var i = 0; i < held.Count; i++)
        {
            if (messages[i].Role != held[i].Role || messages[i].Content != held[i].Content)
            {
                return false;
            }
        }

        return true;
    }

    private DecodeRequestOptions DecodeOptions(int? maxTokens, string maxTokensParam, float? temperature, float? topP, ulong? seed, string[]? stop, string requestId)
    {
        var limit = silo.Value.MaxDecodeTokens;
        if (maxTokens is { } max && (max < 1 || max > limit))
        {
            throw OpenAIException.Invalid($"{maxTokensParam} must be in [1, {limit}].", maxTokensParam);
        }

        if (temperature is < 0 or > 2 || (temperature is { } t && float.IsNaN(t)))
        {
            throw OpenAIException.Invalid("temperature must be in [0, 2].", "temperature");
        }

        if (topP is <= 0 or > 1 || (topP is { } p && float.IsNaN(p)))
        {
            throw OpenAIException.Invalid("top_p must be in (0, 1].", "top_p");
        }

        // OpenAI's defaults: temperature 1, top_p 1. Without a seed each request draws its own.
        var sampling = new SamplingOptions(temperature ?? 1, 0, topP ?? 1, seed ?? BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)));
        return new DecodeRequestOptions(maxTokens ?? limit, sampling, [], requestId, stop);
    }

    private static ChatTurn[] ParseResponseInput(JsonElement input)
    {
        switch (input.ValueKind)
        {
            case JsonValueKind.String when input.GetString() is { Length: > 0 } text:
                return [new ChatTurn("user", text)];
            case JsonValueKind.Array when input.GetArrayLength() > 0:
                var messages = new ChatTurn[input.GetArrayLength()];
                var i = 0;
                foreach (var element in input.EnumerateArray())
                {
                    var param = $"input[{i}]";
                    var item = element.ValueKind == JsonValueKind.Object
                        ? element.Deserialize(s_json.InputMessage) ?? throw OpenAIException.Invalid($"{param} is not a message.", param)
                        : throw OpenAIException.Invalid($"{param} is not a message.", param);
                    if (item.Type is not (null or "message"))
                    {
                        throw OpenAIException.Invalid($"{param} has type {OpenAIErrors.Quote(item.Type)}; only messages are supported.", param);
                    }

                    messages[i++] = ParseMessage(item, param);
                }

                return messages;
            default:
                throw OpenAIException.Invalid("input must be a non-empty string or a non-empty list of messages.", "input");
        }
    }

    private static ChatTurn ParseMessage(InputMessage message, string param)
    {
        // developer is the newer name of system; chat templates know system.
        var role = message.Role switch
        {
            "user" or "assistant" or "system" => message.Role,
            "developer" => "system",
            _ => throw OpenAIException.Invalid($"{param}.role {OpenAIErrors.Quote(message.Role)} is not one of user, assistant, system, developer.", $"{param}.role"),
        };
        var content = message.Content;
        if (content.ValueKind == JsonValueKind.String)
        {
            return new ChatTurn(role, content.GetString()!);
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            throw OpenAIException.Invalid($"{param}.content must be a string or a list of text parts.", $"{param}.content");
        }

        var text = new System.Text.StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            var type = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type is not ("text" or "input_text" or "output_text") || !part.TryGetProperty("text", out var value) || value.ValueKind != JsonValueKind.String)
            {
                throw OpenAIException.Invalid($"{param}.content holds a part of type {OpenAIErrors.Quote(type)}; only text parts are supported.", $"{param}.content");
            }

            text.Append(value.GetString());
        }

        return new ChatTurn(role, text.ToString());
    }

    private static string[]? ParseStop(JsonElement stop) => stop.ValueKind switch
    {
        JsonValueKind.Undefined or JsonValueKind.Null => null,
        JsonValueKind.String => [stop.GetString()!],
        JsonValueKind.Array when stop.EnumerateArray().All(s => s.ValueKind == JsonValueKind.String) => [.. stop.EnumerateArray().Select(s => s.GetString()!)],
        _ => throw OpenAIException.Invalid("stop must be a string or a list of strings.", "stop"),
    };

    private static async Task<T> ReadAsync<T>(HttpContext http, JsonTypeInfo<T> type)
        where T : class =>
        await JsonSerializer.DeserializeAsync(http.Request.Body, type, http.RequestAborted)
        ?? throw OpenAIException.Invalid("The request body must be a JSON object.");

    private static async Task WriteJsonAsync<T>(HttpContext http, T value, JsonTypeInfo<T> type)
    {
        http.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(http.Response.Body, value, type, http.RequestAborted);
    }

    private static async Task WriteEventAsync<T>(HttpContext http, string? name, T value, JsonTypeInfo<T> type)
    {
        var data = JsonSerializer.Serialize(value, type);
        await http.Response.WriteAsync(name is null ? $"data: {data}\n\n" : $"event: {name}\ndata: {data}\n\n", http.RequestAborted);
        await http.Response.Body.FlushAsync(http.RequestAborted);
    }

    private static void StartEvents(HttpContext http)
    {
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
    }

    private static OpenAIException UnknownResponse(string id, string? param) =>
        OpenAIException.NotFound($"No response with id {OpenAIErrors.Quote(id)}.", param);

    private static string NewId(string prefix) => prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    /// <summary>
    /// The Responses API's stream: created, in progress, the message and its text part, deltas, then done and
    /// completed. It opens with the first piece of text (or at the end), so a request refused while its input is
    /// appended or before its first token (validation, every quota) still gets its HTTP status.
    /// </summary>
    private sealed class ResponseEvents(HttpContext http, ResponseObject response, OutputMessage item, OutputText part)
    {
        private long _sequence;
        private bool _started;

        public async Task DeltaAsync(string text)
        {
            await StartAsync();
            await SendAsync(new ResponseStreamEvent { Type = "response.output_text.delta", ItemId = item.Id, OutputIndex = 0, ContentIndex = 0, Delta = text });
        }

        public async Task FinishAsync()
        {
            await StartAsync();
            await SendAsync(new ResponseStreamEvent { Type = "response.output_text.done", ItemId = item.Id, OutputIndex = 0, ContentIndex = 0, Text = part.Text });
            await SendAsync(new ResponseStreamEvent { Type = "response.content_part.done", ItemId = item.Id, OutputIndex = 0, ContentIndex = 0, Part = part });
            await SendAsync(new ResponseStreamEvent { Type = "response.output_item.done", OutputIndex = 0, Item = item });
            await SendAsync(new ResponseStreamEvent { Type = response.Status == "completed" ? "response.completed" : "response.incomplete", Response = response });
        }

        private async Task StartAsync()
        {
            if (_started)
            {
                return;
            }

            _started = true;
            StartEvents(http);
            await SendAsync(new ResponseStreamEvent { Type = "response.created", Response = Snapshot() });
            await SendAsync(new ResponseStreamEvent { Type = "response.in_progress", Response = Snapshot() });
            await SendAsync(new ResponseStreamEvent { Type = "response.output_item.added", OutputIndex = 0, Item = new OutputMessage { Id = item.Id, Status = "in_progress" } });
            await SendAsync(new ResponseStreamEvent { Type = "response.content_part.added", ItemId = item.Id, OutputIndex = 0, ContentIndex = 0, Part = new OutputText { Text = "" } });
        }

        /// <summary>The response as it stands before its output (the object itself is completed at the end).</summary>
        private ResponseObject Snapshot() => new()
        {
            Id = response.Id,
            CreatedAt = response.CreatedAt,
            Status = "in_progress",
            Model = response.Model,
            PreviousResponseId = response.PreviousResponseId,
            Instructions = response.Instructions,
            Temperature = response.Temperature,
            TopP = response.TopP,
            MaxOutputTokens = response.MaxOutputTokens,
            Store = response.Store,
        };

        private Task SendAsync(ResponseStreamEvent e)
        {
            e.SequenceNumber = _sequence++;
            return WriteEventAsync(http, e.Type, e, s_json.ResponseStreamEvent);
        }
    }

    /// <summary>
    /// Chat completions' stream: chat.completion.chunk objects as unnamed events, then <c>data: [DONE]</c>. It opens
    /// with the first piece of text (or at the end), as <see cref="ResponseEvents"/>.
    /// </summary>
    private sealed class ChatEvents(HttpContext http, string id, long created, string model)
    {
        private bool _started;

        public async Task DeltaAsync(string text)
        {
            await StartAsync();
            await SendAsync([new ChatChoice { Index = 0, Delta = new ChatMessageOut(null, text) }]);
        }

        public async Task FinishAsync(string finish, ChatUsage? usage, SessionRef? session)
        {
            await StartAsync();
            await SendAsync([new ChatChoice { Index = 0, Delta = new ChatMessageOut(null, null), FinishReason = finish }], session: session);
            if (usage is not null)
            {
                await SendAsync([], usage);
            }

            await http.Response.WriteAsync("data: [DONE]\n\n", http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
        }

        private async Task StartAsync()
        {
            if (!_started)
            {
                _started = true;
                StartEvents(http);
                await SendAsync([new ChatChoice { Index = 0, Delta = new ChatMessageOut("assistant", "") }]);
            }
        }

        private Task SendAsync(List<ChatChoice> choices, ChatUsage? usage = null, SessionRef? session = null) =>
            WriteEventAsync(
                http,
                null,
                new ChatCompletion { Id = id, Object = "chat.completion.chunk", Created = created, Model = model, Choices = choices, Usage = usage, Kvcache = session },
                s_json.ChatCompletion);
    }

    private static partial class Log
    {
        [LoggerMessage(500, LogLevel.Error, "OpenAI-compatible request {Path} failed")]
        public static partial void Failed(ILogger logger, Exception exception, string path);

        [LoggerMessage(501, LogLevel.Warning, "OpenAI-compatible request {Path} failed as unavailable: {Reason}")]
        public static partial void Unavailable(ILogger logger, Exception exception, string path, string reason);

        [LoggerMessage(502, LogLevel.Information, "Tenant {Tenant}: response {ResponseId} ended session {SessionId} at {Position}, which now holds {Current}; forked into session {NewSessionId}")]
        public static partial void Forked(ILogger logger, string tenant, string responseId, string sessionId, long position, long current, string newSessionId);

        [LoggerMessage(503, LogLevel.Information, "Tenant {Tenant}: a concurrent turn continued response {ResponseId} in session {SessionId} at {Position} first; forked into session {NewSessionId}")]
        public static partial void ForkedAfterRace(ILogger logger, string tenant, string responseId, string sessionId, long position, string newSessionId);

        [LoggerMessage(504, LogLevel.Information, "Tenant {Tenant}: a concurrent request of the same conversation key moved session {SessionId} past {Position} first; answered from temporary fork {NewSessionId}")]
        public static partial void ChatForkedAfterRace(ILogger logger, string tenant, string sessionId, long position, string newSessionId);
    }
}
