using Grpc.Core;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Client.Internal;

/// <summary>
/// One Decode request read to its end across transient failures: a retry sends the same request id, the service
/// replays what the request already produced, and the events this reader already returned are skipped.
/// </summary>
internal sealed class ResumableDecode(
    V1.KvCache.KvCacheClient client,
    V1.DecodeRequest request,
    Metadata headers,
    KvCacheChatClientOptions options,
    CancellationToken cancellationToken) : IAsyncDisposable
{
    private AsyncServerStreamingCall<V1.DecodeEvent>? _call;
    private int _returned;
    private int _readThisAttempt;
    private int _attempt;

    /// <summary>The next event not returned before, or null at the end of the stream.</summary>
    public async ValueTask<V1.DecodeEvent?> NextAsync()
    {
        while (true)
        {
            if (_call is null)
            {
                _attempt++;
                _readThisAttempt = 0;
                _call = client.Decode(request, headers, cancellationToken: cancellationToken);
            }

            try
            {
                if (!await _call.ResponseStream.MoveNext(cancellationToken))
                {
                    return null;
                }
            }
            catch (RpcException e) when (Retries.IsTransient(e) && _attempt < options.MaxAttempts)
            {
                _call.Dispose();
                _call = null;
                await Task.Delay(options.RetryDelay, cancellationToken);
                continue;
            }

            if (_readThisAttempt++ < _returned)
            {
                continue;
            }

            _returned++;
            return _call.ResponseStream.Current;
        }
    }

    public ValueTask DisposeAsync()
    {
        _call?.Dispose();
        return ValueTask.CompletedTask;
    }
}
