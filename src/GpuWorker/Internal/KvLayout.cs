namespace KvCache.GpuWorker.Internal;

/// <summary>Shape of a paged cache: per token and layer, a K side and a V side of <c>Heads</c> vectors of <c>Dim</c> floats.</summary>
internal readonly record struct KvLayout(int Layers, int Heads, int Dim)
{
    public long BytesPerToken => 2L * Layers * Heads * Dim * sizeof(float);

    public long FloatsPerToken => 2L * Layers * Heads * Dim;

    public static KvLayout Full(ModelConfig c) => new(c.NumHiddenLayers, c.NumKeyValueHeads, c.HeadDim);

    public static KvLayout SvdGqa(ModelConfig c) => c.SvdGqa is { } s
        ? new(c.NumHiddenLayers, c.SvdGqaGroups, s.Rank)
        : throw new ArgumentException("The model is not SVD-GQA-converted.", nameof(c));
}
