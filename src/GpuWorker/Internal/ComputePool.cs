namespace KvCache.GpuWorker.Internal;

/// <summary>A unit of parallel work: indices [0, count) are handed out to threads one at a time.</summary>
internal abstract class ParallelJob
{
    public abstract void Execute(int index, int thread);
}

/// <summary>
/// Dedicated compute threads that spin briefly between jobs: a decode step runs ~100 small jobs, and waking
/// a blocked thread per job (tens of microseconds, milliseconds on a busy machine) would cost more than the
/// work. The caller always works too and never waits for a worker that has not joined the job yet, so a
/// descheduled or sleeping worker only means less help, not a stall. Run allocates nothing.
/// One Run at a time: callers serialize (the CPU backend holds a lock around each parallel op).
/// </summary>
internal sealed class ComputePool : IDisposable
{
    private const int SpinIterations = 20_000;

    private readonly Thread[] _workers;
    private readonly ManualResetEventSlim[] _wake;
    private readonly int[] _sleeping;
    private ParallelJob? _job;
    private int _count;
    private int _next;
    private int _open;
    private int _active;
    private int _generation;
    private volatile bool _disposed;
    private Exception? _error;

    public ComputePool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
        _workers = new Thread[threads - 1];
        _wake = new ManualResetEventSlim[threads - 1];
        _sleeping = new int[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            int worker = i;
            _wake[i] = new ManualResetEventSlim(false, 0);
            _workers[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"kvcache-compute-{i + 1}" };
            _workers[i].Start();
        }
    }

    public int Threads { get; }

    /// <summary>Runs indices [0, count) on every thread, or all on the caller when <paramref name="inline"/> (a job too small to split).</summary>
    public void Run(ParallelJob job, int count, bool inline = false)
    {
        if (inline || count <= 1 || _workers.Length == 0)
        {
            for (int i = 0; i < count; i++)
            {
                job.Execute(i, 0);
            }

            return;
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        _job = job;
        _count = count;
        _next = 0;
        _error = null;
        Volatile.Write(ref _open, 1);
        Interlocked.Increment(ref _generation);
        for (int i = 0; i < _workers.Length; i++)
        {
            if (Volatile.Read(ref _sleeping[i]) == 1)
            {
                _wake[i].Set();
            }
        }

        Work(0);

        // Every index is claimed. Close the job, then wait only for workers that joined it (handshake with
        // WorkerLoop: a worker counts itself active before it looks at _open).
        Interlocked.Exchange(ref _open, 0);
        var spin = default(SpinWait);
        while (Volatile.Read(ref _active) != 0)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }

        _job = null;
        if (_error is { } error)
        {
            throw new AggregateException(error);
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        Interlocked.Increment(ref _generation);
        foreach (var wake in _wake)
        {
            wake.Set();
        }

        foreach (var worker in _workers)
        {
            worker.Join();
        }

        foreach (var wake in _wake)
        {
            wake.Dispose();
        }
    }

    private void Work(int thread)
    {
        var job = _job!;
        int count = _count;
        int i;
        while ((i = Interlocked.Increment(ref _next) - 1) < count)
        {
            try
            {
                job.Execute(i, thread);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
        }
    }

    private void WorkerLoop(int worker)
    {
        int seen = Volatile.Read(ref _generation);
        while (true)
        {
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen)
            {
                if (spins++ < SpinIterations)
                {
                    Thread.SpinWait(8);
                    continue;
                }

                // Dekker-style handshake with Run: either Run sees the flag and sets the event, or we see the new generation.
                _wake[worker].Reset();
                Interlocked.Exchange(ref _sleeping[worker], 1);
                if (Volatile.Read(ref _generation) == seen)
                {
                    _wake[worker].Wait();
                }

                Interlocked.Exchange(ref _sleeping[worker], 0);
            }

            seen = Volatile.Read(ref _generation);
            if (_disposed)
            {
                return;
            }

            Interlocked.Increment(ref _active);
            if (Volatile.Read(ref _open) == 1)
            {
                Work(worker + 1);
            }

            Interlocked.Decrement(ref _active);
        }
    }
}
