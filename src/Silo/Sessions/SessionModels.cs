using KvCache.GpuWorker.Sampling;

namespace KvCache.Silo.Sessions;

public enum SessionResidency
{
    /// <summary>Held in a silo's memory.</summary>
    Active,

    /// <summary>Only in the spill store; the next call restores it.</summary>
    Spilled,

    /// <summary>Created, nothing appended yet: there is no cache to hold anywhere.</summary>
    Empty,
}

/// <summary>What a client may know about a session.</summary>
[GenerateSerializer, Immutable]
public sealed record SessionInfo(
    string Id,
    string Model,
    string Codec,
    long Position,
    SessionResidency Residency,
    string? OwnerSilo,
    long CacheBytes,
    long BytesPerToken,
    long MaxPosition);

/// <summary>What an Append adds: exactly one of token ids, text (tokenized by the model's tokenizer) or chat messages
/// (rendered with the model's chat template).</summary>
/// <param name="PromptLogprobs">Also return the log-probability of every appended token.</param>
/// <param name="RequestId">With an id, the result is recorded with the tokens, and a repeated call returns it unchanged.</param>
/// <param name="ExpectedPosition">Append only if the session is at this position; otherwise append nothing and fail as
/// <see cref="SessionErrorCode.Aborted"/> (a compare-and-append: two turns continuing one position cannot both land).</param>
[GenerateSerializer, Immutable]
public sealed record AppendInput(int[] TokenIds, string? Text, ChatTurn[] Messages, int TopLogprobs, bool PromptLogprobs, string? RequestId = null, long? ExpectedPosition = null)
{
    public static AppendInput Tokens(int[] tokens, int topLogprobs, string? requestId = null) => new(tokens, null, [], topLogprobs, false, requestId);
}

/// <summary>One chat message of an Append.</summary>
[GenerateSerializer, Immutable]
public sealed record ChatTurn(string Role, string Content);

/// <param name="PromptLogprobs">With <see cref="AppendInput.PromptLogprobs"/>: each appended token and its
/// log-probability given what precedes it (NaN for the first token of an empty session); else empty.</param>
/// <param name="AppendedTokens">Tokens the call appended (after tokenization and template rendering).</param>
/// <param name="Replayed">The result an earlier attempt with the same request id recorded: this attempt changed nothing.</param>
[GenerateSerializer, Immutable]
public sealed record AppendResult(long Position, TokenLogprob[] TopLogprobs, TokenLogprob[] PromptLogprobs, int AppendedTokens, bool Replayed);

public enum FinishReason
{
    None,
    StopToken,
    MaxTokens,
    MaxPosition,
    StopString,
}

/// <summary>One generated token, durable in the token log before it is handed out.</summary>
/// <param name="Replayed">Produced by an earlier attempt of the same request id and read back from the token log;
/// its logprob is not stored, so it is NaN.</param>
/// <param name="Text">The token's text for models with a tokenizer (UTF-8-complete: may be empty while a character is
/// split across tokens; cut after a matched stop string); empty otherwise.</param>
[GenerateSerializer, Immutable]
public readonly record struct DecodedToken(int TokenId, long Position, float Logprob, FinishReason Finish, bool Replayed, string Text = "");

/// <param name="Stop">Stop strings (models with a tokenizer): generation ends once the decoded text contains one.</param>
/// <param name="IgnoreEos">Do not stop on the model's own end-of-sequence tokens.</param>
[GenerateSerializer, Immutable]
public sealed record DecodeRequestOptions(
    int MaxTokens,
    SamplingOptions Sampling,
    int[] StopTokenIds,
    string? RequestId,
    string[]? Stop = null,
    bool IgnoreEos = false);

/// <param name="Tokenizer">"sentencepiece", "bpe", "byte", or empty (token ids only).</param>
/// <param name="ChatTemplate">The chat template family, or empty.</param>
/// <param name="EosTokenIds">Decode's default stop tokens.</param>
[GenerateSerializer, Immutable]
public sealed record ModelDescription(
    string Id,
    int VocabSize,
    long MaxPosition,
    string[] Codecs,
    int NumLayers,
    int HiddenSize,
    long Parameters,
    string Tokenizer,
    string ChatTemplate,
    int[] EosTokenIds);

[GenerateSerializer, Immutable]
public sealed record SessionListPage(SessionInfo[] Sessions, string? NextPageToken);

/// <summary>A live migration's outcome, for the operator who asked for it.</summary>
/// <param name="FromSilo">Name of the silo the session left; empty when it was not in any silo's memory.</param>
/// <param name="Seconds">How long the session was unavailable: its snapshot was written and handed over.</param>
[GenerateSerializer, Immutable]
public sealed record MigrationResult(string FromSilo, string ToSilo, long Position, long CacheBytes, double Seconds);
