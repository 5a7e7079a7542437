using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvCache.Gateway.OpenAI;

// The OpenAI wire shapes this gateway reads and writes. Fields a request carries that are not declared here are
// ignored (System.Text.Json skips unknown members), as the README lists.

internal sealed class ResponseCreateRequest
{
    public string? Model { get; set; }

    /// <summary>A string (one user message) or a list of message items.</summary>
    public JsonElement Input { get; set; }

    public string? Instructions { get; set; }

    public string? PreviousResponseId { get; set; }

    public bool Stream { get; set; }

    public int? MaxOutputTokens { get; set; }

    public float? Temperature { get; set; }

    public float? TopP { get; set; }

    public bool? Store { get; set; }
}

internal sealed class ChatCompletionRequest
{
    public string? Model { get; set; }

    public List<InputMessage>? Messages { get; set; }

    public bool Stream { get; set; }

    public StreamOptions? StreamOptions { get; set; }

    public int? MaxTokens { get; set; }

    public int? MaxCompletionTokens { get; set; }

    public float? Temperature { get; set; }

    public float? TopP { get; set; }

    public int? N { get; set; }

    public ulong? Seed { get; set; }

    /// <summary>A string or a list of strings.</summary>
    public JsonElement Stop { get; set; }
}

internal sealed class StreamOptions
{
    public bool IncludeUsage { get; set; }
}

/// <summary>A chat message, or a Responses input item of type "message": content is a string or a list of text parts.</summary>
internal sealed class InputMessage
{
    public string? Type { get; set; }

    public string? Role { get; set; }

    public JsonElement Content { get; set; }
}

internal sealed class ResponseObject
{
    public required string Id { get; init; }

    public string Object { get; init; } = "response";

    public long CreatedAt { get; init; }

    public required string Status { get; set; }

    public IncompleteDetails? IncompleteDetails { get; set; }

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public ErrorBody? Error { get; set; }

    public required string Model { get; init; }

    public List<OutputMessage> Output { get; set; } = [];

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? PreviousResponseId { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Instructions { get; init; }

    public float Temperature { get; init; }

    public float TopP { get; init; }

    public int? MaxOutputTokens { get; init; }

    public bool Store { get; init; }

    public bool ParallelToolCalls { get; init; }

    public string ToolChoice { get; init; } = "none";

    public List<JsonElement> Tools { get; init; } = [];

    public Dictionary<string, string> Metadata { get; init; } = [];

    public ResponseUsage? Usage { get; set; }

    /// <summary>This service's addition: the session that holds the conversation and its position after the response.</summary>
    public SessionRef? Kvcache { get; set; }
}

internal sealed record IncompleteDetails(string Reason);

internal sealed class OutputMessage
{
    public string Type { get; init; } = "message";

    public required string Id { get; init; }

    public required string Status { get; set; }

    public string Role { get; init; } = "assistant";

    public List<OutputText> Content { get; set; } = [];
}

internal sealed class OutputText
{
    public string Type { get; init; } = "output_text";

    public required string Text { get; set; }

    public List<JsonElement> Annotations { get; init; } = [];
}

internal sealed record ResponseUsage(long InputTokens, InputTokensDetails InputTokensDetails, long OutputTokens, OutputTokensDetails OutputTokensDetails, long TotalTokens);

internal sealed record InputTokensDetails(long CachedTokens);

internal sealed record OutputTokensDetails(long ReasoningTokens);

internal sealed record SessionRef(string SessionId, long Position);

/// <summary>One server-sent event of a streamed response; members that an event type does not carry stay null.</summary>
internal sealed class ResponseStreamEvent
{
    public required string Type { get; init; }

    public long SequenceNumber { get; set; }

    public ResponseObject? Response { get; init; }

    public int? OutputIndex { get; init; }

    public int? ContentIndex { get; init; }

    public string? ItemId { get; init; }

    public OutputMessage? Item { get; init; }

    public OutputText? Part { get; init; }

    public string? Delta { get; init; }

    public string? Text { get; init; }

    public ErrorBody? Error { get; init; }
}

internal sealed record DeletedObject(string Id, string Object, bool Deleted);

internal sealed class ChatCompletion
{
    public required string Id { get; init; }

    public required string Object { get; init; }

    public long Created { get; init; }

    public required string Model { get; init; }

    public List<ChatChoice> Choices { get; init; } = [];

    public ChatUsage? Usage { get; init; }

    /// <summary>This service's addition, as on <see cref="ResponseObject.Kvcache"/>.</summary>
    public SessionRef? Kvcache { get; init; }
}

internal sealed class ChatChoice
{
    public int Index { get; init; }

    public ChatMessageOut? Message { get; init; }

    public ChatMessageOut? Delta { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? FinishReason { get; init; }
}

internal sealed record ChatMessageOut(string? Role, string? Content);

internal sealed record ChatUsage(long PromptTokens, long CompletionTokens, long TotalTokens, PromptTokensDetails PromptTokensDetails);

internal sealed record PromptTokensDetails(long CachedTokens);

internal sealed record ModelList(string Object, List<ModelObject> Data);

internal sealed record ModelObject(string Id, string Object, long Created, string OwnedBy);

internal sealed record ErrorEnvelope(ErrorBody Error);

internal sealed record ErrorBody(
    string Message,
    string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param);

/// <summary>What the response store keeps of a response: enough to answer GET and to continue or fork from it.</summary>
/// <param name="Position">The session's position after this response's reply.</param>
internal sealed record StoredResponse(string Tenant, string SessionId, long Position, ResponseObject Response);

/// <summary>A chat conversation key's session: the messages it holds and the position they end at.</summary>
internal sealed record StoredConversation(string Tenant, string SessionId, long Position, List<StoredMessage> Messages);

internal sealed record StoredMessage(string Role, string Content);

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(ResponseCreateRequest))]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(InputMessage))]
[JsonSerializable(typeof(ResponseObject))]
[JsonSerializable(typeof(ResponseStreamEvent))]
[JsonSerializable(typeof(DeletedObject))]
[JsonSerializable(typeof(ChatCompletion))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ErrorEnvelope))]
[JsonSerializable(typeof(StoredResponse))]
[JsonSerializable(typeof(StoredConversation))]
internal sealed partial class OpenAIJsonContext : JsonSerializerContext;
