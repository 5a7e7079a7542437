using KvCache.GpuWorker;

namespace KvCache.Silo.Models;

internal static class LanguageModelExtensions
{
    /// <summary>
    /// Bytes one more token adds to a long session's cache: what a client plans capacity with. Constant parts of a
    /// codec (YOCO's sliding-window rings, Fourier's coefficients) are in the session's cache bytes, not here.
    /// </summary>
    public static long BytesPerToken(this ILanguageModel model, string codec)
    {
        var last = model.Config.MaxPositionEmbeddings;
        return model.CacheBytesAt(codec, last) - model.CacheBytesAt(codec, last - 1);
    }
}
