namespace KvCache.GpuWorker.Batching;

/// <summary>How a <see cref="BatchScheduler"/> forms passes.</summary>
public sealed record BatchSchedulerOptions
{
    /// <summary>
    /// After a pass, how long the scheduler waits for the sessions it just served to come back with their next
    /// step before it runs a smaller pass without them. Bounds the latency batching adds to a step.
    /// </summary>
    public TimeSpan GatherWindow { get; init; } = TimeSpan.FromMilliseconds(2);

    /// <summary>
    /// Rows of every pass kept for prefill while a prefill waits, so a full decode batch cannot starve it; decode
    /// rows take the rest first, so a long prompt cannot starve decoding either.
    /// </summary>
    public int PrefillRowsReserved { get; init; } = 16;
}
