namespace KvCache.GpuWorker;

/// <summary>
/// One cache's share of a batched forward pass (<see cref="ILanguageModel.ForwardBatch"/>): tokens to append and,
/// unless <see cref="Logits"/> is empty, where the next-token logits of the last one go.
/// </summary>
public readonly struct ForwardItem(IKvCache cache, ReadOnlyMemory<int> tokens, Memory<float> logits)
{
    public IKvCache Cache { get; } = cache;

    public ReadOnlyMemory<int> Tokens { get; } = tokens;

    /// <summary>Empty for a prefill chunk whose logits nobody reads (a later chunk of the same input follows).</summary>
    public Memory<float> Logits { get; } = logits;
}
