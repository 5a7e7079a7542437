using KvCache.Silo.Storage.Redis.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvCache.Silo.Storage.Redis;

/// <summary>
/// A lean pipelined RESP2 client: any number of callers share a few connections, each with many commands in
/// flight. A lost connection fails the commands it carried with <see cref="RedisConnectionException"/>; the
/// next command on it reconnects. Error replies throw <see cref="RedisException"/> with the server's message.
/// </summary>
public sealed class RedisClient : IAsyncDisposable
{
    private readonly RedisClientOptions _options;
    private readonly ILogger _logger;
    private readonly Slot[] _slots;
    private int _next;
    private bool _disposed;

    public RedisClient(RedisClientOptions options, ILogger<RedisClient>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _slots = new Slot[options.Connections];
        for (int i = 0; i < _slots.Length; i++)
        {
            _slots[i] = new Slot();
        }
    }

    /// <summary>Runs a command given as its arguments, the name first.</summary>
    public async ValueTask<RedisReply> ExecuteAsync(RedisArgument[] command, CancellationToken cancellationToken = default)
    {
        using var request = RedisRequest.Create(command);
        return await ExecuteAsync(request, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<RedisReply> ExecuteAsync(RedisRequest request, CancellationToken cancellationToken = default)
    {
        var connection = await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await connection.ExecuteAsync(request, default, readInto: false, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs a command whose reply is a bulk string (GET, GETRANGE) and reads it straight into
    /// <paramref name="destination"/>; returns its length, or -1 for a null reply.
    /// </summary>
    /// <exception cref="ArgumentException">The value is longer than destination (it is consumed and dropped).</exception>
    /// <remarks>Once sent, the command is waited for even if cancelled: the reply is on its way into destination.</remarks>
    public async ValueTask<int> ExecuteIntoAsync(RedisRequest request, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        var connection = await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
        var reply = await connection.ExecuteAsync(request, destination, readInto: true, cancellationToken).ConfigureAwait(false);
        return reply.Kind switch
        {
            RedisReplyKind.Null => -1,
            RedisReplyKind.BulkString => reply.Length,
            _ => throw new RedisException($"Expected a bulk string reply to '{request.Name}', got {reply.Kind}: {reply}."),
        };
    }

    /// <summary>EVALSHA, falling back to EVAL (which caches the script) when the server does not know it.</summary>
    public async ValueTask<RedisReply> EvalAsync(RedisScript script, RedisArgument[] keys, RedisArgument[] args, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(script);
        try
        {
            using var request = ScriptRequest("EVALSHA", script.Sha1, keys, args);
            return await ExecuteAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (RedisException e) when (e is not RedisConnectionException && e.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal))
        {
            using var request = ScriptRequest("EVAL", script.Source, keys, args);
            return await ExecuteAsync(request, cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Task<RedisConnection>?[] current;
        lock (_slots)
        {
            _disposed = true;
            current = [.. _slots.Select(s => s.Connection)];
        }

        foreach (var task in current)
        {
            if (task is not null && await task.ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : null, TaskScheduler.Default).ConfigureAwait(false) is { } connection)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static RedisRequest ScriptRequest(string command, string script, RedisArgument[] keys, RedisArgument[] args)
    {
        var request = new RedisRequest(3 + keys.Length + args.Length);
        request.Add(command).Add(script).Add(keys.Length);
        foreach (var key in keys)
        {
            key.AddTo(request);
        }

        foreach (var arg in args)
        {
            arg.AddTo(request);
        }

        return request;
    }

    private ValueTask<RedisConnection> GetConnectionAsync(CancellationToken cancellationToken)
    {
        var slot = _slots[(int)((uint)Interlocked.Increment(ref _next) % (uint)_slots.Length)];
        Task<RedisConnection>? task;
        lock (_slots)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            task = slot.Connection;
            if (task is null || task.IsFaulted || task.IsCanceled || (task.IsCompletedSuccessfully && task.Result.IsFaulted))
            {
                if (task is { IsCompletedSuccessfully: true })
                {
                    _ = task.Result.DisposeAsync().AsTask();
                }

                task = RedisConnection.ConnectAsync(_options, _logger);
                slot.Connection = task;
            }
        }

        return task.IsCompletedSuccessfully ? ValueTask.FromResult(task.Result) : new ValueTask<RedisConnection>(task.WaitAsync(cancellationToken));
    }

    private sealed class Slot
    {
        public Task<RedisConnection>? Connection { get; set; }
    }
}
