using KvCache.GpuWorker.Sampling;

namespace KvCache.Silo.Sessions;

public enum SessionResidency
{
    /// <summary>Held in a silo's memory.</summary>
    Active,

    /// <summary>Only in the spill store; the next call restores it.</summary>
    Spilled,
}

/// <summary>What a client may know about a session.</summary>
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

public sealed record AppendResult(long Position, IReadOnlyList<TokenLogprob> TopLogprobs);

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
public readonly record struct DecodedToken(int TokenId, long Position, float Logprob, FinishReason Finish, bool Replayed);

public sealed record DecodeRequestOptions(
    int MaxTokens,
    SamplingOptions Sampling,
    IReadOnlyCollection<int> StopTokenIds,
    string? RequestId);

public sealed record ModelDescription(
    string Id,
    int VocabSize,
    long MaxPosition,
    IReadOnlyList<string> Codecs,
    int NumLayers,
    int HiddenSize,
    long Parameters);

public sealed record SessionListPage(IReadOnlyList<SessionInfo> Sessions, string? NextPageToken);
