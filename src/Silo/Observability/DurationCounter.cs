namespace KvCache.Silo.Observability;

/// <summary>A count of events and their summed duration, updated lock-free from any thread.</summary>
public sealed class DurationCounter
{
    private long _count;
    private long _ticks;

    public long Count => Interlocked.Read(ref _count);

    public double SumSeconds => (double)Interlocked.Read(ref _ticks) / TimeSpan.TicksPerSecond;

    public void Record(TimeSpan duration)
    {
        Interlocked.Add(ref _ticks, duration.Ticks);
        Interlocked.Increment(ref _count);
    }
}
