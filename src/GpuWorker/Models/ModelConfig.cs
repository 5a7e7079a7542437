namespace KvCache.GpuWorker;

/// <summary>
/// Shape of a Llama-style decoder, read from a Hugging Face <c>config.json</c> (LlamaForCausalLM semantics).
/// </summary>
public sealed record ModelConfig
{
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    /// <summary>Per-head dimension; HiddenSize / NumAttentionHeads unless config.json says otherwise.</summary>
    public required int HeadDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public double RmsNormEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 10000.0;
    public bool TieWordEmbeddings { get; init; }
}
