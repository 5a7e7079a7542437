namespace KvCache.GpuWorker.Internal;

/// <summary>
/// Shape of a paged cache: per token and layer, a K side and a V side of <c>Heads</c> vectors of <c>Dim</c> elements,
/// each <c>ElementBytes</c> wide (4 for f32, 2 for bf16).
/// </summary>
internal readonly record struct KvLayout(int Layers, int Heads, int Dim, int ElementBytes = sizeof(float))
{
    public long BytesPerToken => ElementsPerToken * ElementBytes;

    public long ElementsPerToken => 2L * Layers * Heads * Dim;

    public static KvLayout Full(ModelConfig c) => new(c.NumHiddenLayers, c.NumKeyValueHeads, c.HeadDim);

    public static KvLayout SvdGqa(ModelConfig c) => c.SvdGqa is { } s
        ? new(c.NumHiddenLayers, c.SvdGqaGroups, s.Rank)
        : throw new ArgumentException("The model is not SVD-GQA-converted.", nameof(c));

    /// <summary>This shape with elements stored in <paramref name="format"/>.</summary>
    public KvLayout In(KvCacheFormat format) => this with { ElementBytes = ElementBytesOf(format) };

    /// <summary>Bytes of one cached element in <paramref name="format"/>.</summary>
    public static int ElementBytesOf(KvCacheFormat format) => format == KvCacheFormat.Bf16 ? sizeof(ushort) : sizeof(float);
}
