namespace KvCache.GpuWorker;

/// <summary>
/// One cache's share of a batched forward pass (<see cref="ILanguageModel.ForwardBatch"/>): tokens to append and,
/// unless <see cref="Logits"/> is empty, where the next-token logits of the last one go.
/// </summary>
/// <remarks>
/// Scoring (prompt log-probabilities): with <see cref="ScoreTargets"/> set, row r of the item (its r-th token) also
/// runs through the LM head, and <see cref="Scores"/>[r] gets the log-probability of <see cref="ScoreTargets"/>[r]
/// as the token after it, for r below the targets' length (at most the tokens' length).
/// </remarks>
public readonly struct ForwardItem(IKvCache cache, ReadOnlyMemory<int> tokens, Memory<float> logits, ReadOnlyMemory<int> scoreTargets = default, Memory<float> scores = default)
{
    public IKvCache Cache { get; } = cache;

    public ReadOnlyMemory<int> Tokens { get; } = tokens;

    /// <summary>Empty for a prefill chunk whose logits nobody reads (a later chunk of the same input follows).</summary>
    public Memory<float> Logits { get; } = logits;

    /// <summary>The token that follows each row, for the rows to score; empty when the item is not scored.</summary>
    public ReadOnlyMemory<int> ScoreTargets { get; } = scoreTargets;

    /// <summary>Where each scored row's log-probability goes (as long as <see cref="ScoreTargets"/>).</summary>
    public Memory<float> Scores { get; } = scores;
}
