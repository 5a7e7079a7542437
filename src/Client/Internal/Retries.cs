using Grpc.Core;

namespace KvCache.Client.Internal;

/// <summary>Retries of calls that carry their own request id (or are read-only), so a retry applies nothing twice.</summary>
internal static class Retries
{
    /// <summary>Whether a failed attempt may be sent again: the owning silo was failing over, or the connection broke.</summary>
    public static bool IsTransient(RpcException e) => e.StatusCode is StatusCode.Unavailable or StatusCode.Aborted;

    public static async Task<T> RetryAsync<T>(this KvCacheChatClientOptions options, Func<Task<T>> call, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (RpcException e) when (IsTransient(e) && attempt < options.MaxAttempts)
            {
                await Task.Delay(options.RetryDelay, cancellationToken);
            }
        }
    }
}
