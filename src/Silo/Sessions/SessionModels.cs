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

/// <param name="AppendedTokens">Tokens the Append added to the session.</param>
/// <param name="Replayed">The result an earlier attempt with the same request id recorded: this attempt changed nothing.</param>
[GenerateSerializer, Immutable]
public sealed record AppendResult(long Position, TokenLogprob[] TopLogprobs, int AppendedTokens, bool Replayed);

public enum FinishReason
{
    None,
    StopToken,
    MaxTokens,
    MaxPosition,
}

/// <summary>One generated token, durable in the token log before it is handed out.</summary>
/// <param name="Replayed">Produced by an earlier attempt of the same request id and read back from the token log;
/// its logprob is not stored, so it is NaN.</param>
[GenerateSerializer, Immutable]
public readonly record struct DecodedToken(int TokenId, long Position, float Logprob, FinishReason Finish, bool Replayed);

[GenerateSerializer, Immutable]
public sealed record DecodeRequestOptions(
    int MaxTokens,
    SamplingOptions Sampling,
    int[] StopTokenIds,
    string? RequestId);

[GenerateSerializer, Immutable]
public sealed record ModelDescription(
    string Id,
    int VocabSize,
    long MaxPosition,
    string[] Codecs,
    int NumLayers,
    int HiddenSize,
    long Parameters);

[GenerateSerializer, Immutable]
public sealed record SessionListPage(SessionInfo[] Sessions, string? NextPageToken);

/// <summary>A live migration's outcome, for the operator who asked for it.</summary>
/// <param name="FromSilo">Name of the silo the session left; empty when it was not in any silo's memory.</param>
/// <param name="Seconds">How long the session was unavailable: its snapshot was written and handed over.</param>
[GenerateSerializer, Immutable]
public sealed record MigrationResult(string FromSilo, string ToSilo, long Position, long CacheBytes, double Seconds);
