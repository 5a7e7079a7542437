using System.Reflection;
using KvCache.Silo.Storage;

namespace KvCache.Silo.Tests.Infrastructure;

/// <summary>
/// A spill store that passes every call to an inner one, except that the first token-log write on behalf of one
/// Append request id is made and then never answered: as if the owner's process died between the write and its reply.
/// </summary>
public class StoreFaults : DispatchProxy
{
    private readonly TaskCompletionSource _written = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ISessionStore _inner = null!;
    private string _appendRequestId = "";
    private int _hung;

    /// <summary>Completes once the hung write is in the store.</summary>
    public Task Written => _written.Task;

    public static (ISessionStore Store, StoreFaults Faults) HangAfterAppend(ISessionStore inner, string appendRequestId)
    {
        var store = Create<ISessionStore, StoreFaults>();
        var faults = (StoreFaults)(object)store;
        faults._inner = inner;
        faults._appendRequestId = appendRequestId;
        return (store, faults);
    }

    /// <summary>Fails the hung write, so nothing is left waiting once the test is over.</summary>
    public void Release() => _released.TrySetException(new IOException("The store call was abandoned."));

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        var result = targetMethod!.Invoke(_inner, args);
        if (targetMethod.Name == nameof(ISessionStore.AppendTokensAsync)
            && args!.OfType<TokenLogWriter>().Any(w => w.AppendRequestId == _appendRequestId)
            && Interlocked.Exchange(ref _hung, 1) == 0)
        {
            return new ValueTask(HangAsync((ValueTask)result!));
        }

        return result;
    }

    private async Task HangAsync(ValueTask write)
    {
        await write;
        _written.TrySetResult();
        await _released.Task;
    }
}
