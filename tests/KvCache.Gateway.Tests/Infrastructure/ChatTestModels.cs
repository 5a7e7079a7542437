using KvCache.GpuWorker;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// A model that takes text and chat messages for tests: generated random weights (vocabulary 2048) with
/// KvCache.Text.Tests' SentencePiece tokenizer and ChatML template (Fixtures/spm-bpe). Its replies are noise, but
/// tokens and positions are exact under greedy sampling.
/// </summary>
internal static class ChatTestModels
{
    public static void Write(string directory, ulong seed)
    {
        ModelGenerator.Write(directory, ModelConfig.Demo with { VocabSize = 2048 }, seed);
        foreach (var file in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Fixtures", "spm-bpe")))
        {
            File.Copy(file, Path.Combine(directory, Path.GetFileName(file)));
        }
    }
}
