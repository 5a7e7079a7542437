using KvCache.Contracts.V1;
using Grpc.Core;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>Greedy decode requests and reading a decode stream to its end, as every gateway test does.</summary>
internal static class DecodeCalls
{
    public static DecodeRequest Greedy(string sessionId, int maxTokens, string? requestId = null) => new()
    {
        SessionId = sessionId,
        MaxTokens = maxTokens,
        Sampling = new SamplingParams { Temperature = 0 },
        RequestId = requestId ?? "",
    };

    public static async Task<List<DecodeEvent>> ReadAllAsync(AsyncServerStreamingCall<DecodeEvent> call)
    {
        using (call)
        {
            var events = new List<DecodeEvent>();
            while (await call.ResponseStream.MoveNext())
            {
                events.Add(call.ResponseStream.Current);
            }

            return events;
        }
    }

    /// <summary>The token ids of a greedy decode of <paramref name="maxTokens"/> tokens.</summary>
    public static async Task<int[]> GreedyTokensAsync(KvCacheClient client, string sessionId, int maxTokens) =>
        [.. (await ReadAllAsync(client.Decode(Greedy(sessionId, maxTokens)))).Select(e => e.TokenId)];
}
