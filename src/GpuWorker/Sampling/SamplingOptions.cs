namespace KvCache.GpuWorker.Sampling;

/// <summary>How the next token is chosen. Temperature 0 is greedy (argmax).</summary>
/// <param name="TopK">0 disables top-k filtering.</param>
/// <param name="TopP">0 or 1 disables nucleus filtering.</param>
/// <param name="Seed">Random draws depend only on (seed, position).</param>
public readonly record struct SamplingOptions(float Temperature, int TopK, float TopP, ulong Seed);

/// <summary>A token id with its natural-log probability.</summary>
public readonly record struct TokenLogprob(int TokenId, float Logprob);
