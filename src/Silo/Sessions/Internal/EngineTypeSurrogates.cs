using KvCache.GpuWorker.Sampling;

namespace KvCache.Silo.Sessions.Internal;

// The engine's value types cross grain calls, but src/GpuWorker must not depend on Orleans: Orleans' surrogates
// give them a wire form here.

[GenerateSerializer]
internal struct TokenLogprobSurrogate
{
    [Id(0)]
    public int TokenId;

    [Id(1)]
    public float Logprob;
}

[RegisterConverter]
internal sealed class TokenLogprobConverter : IConverter<TokenLogprob, TokenLogprobSurrogate>
{
    public TokenLogprob ConvertFromSurrogate(in TokenLogprobSurrogate surrogate) => new(surrogate.TokenId, surrogate.Logprob);

    public TokenLogprobSurrogate ConvertToSurrogate(in TokenLogprob value) => new() { TokenId = value.TokenId, Logprob = value.Logprob };
}

[GenerateSerializer]
internal struct SamplingOptionsSurrogate
{
    [Id(0)]
    public float Temperature;

    [Id(1)]
    public int TopK;

    [Id(2)]
    public float TopP;

    [Id(3)]
    public ulong Seed;
}

[RegisterConverter]
internal sealed class SamplingOptionsConverter : IConverter<SamplingOptions, SamplingOptionsSurrogate>
{
    public SamplingOptions ConvertFromSurrogate(in SamplingOptionsSurrogate surrogate) =>
        new(surrogate.Temperature, surrogate.TopK, surrogate.TopP, surrogate.Seed);

    public SamplingOptionsSurrogate ConvertToSurrogate(in SamplingOptions value) =>
        new() { Temperature = value.Temperature, TopK = value.TopK, TopP = value.TopP, Seed = value.Seed };
}
