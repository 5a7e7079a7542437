namespace KvCache.GpuWorker.Internal.Backends;

/// <summary>
/// The query rows of one attention op: each row attends over its own cache (a decode batch mixes sessions) at its
/// own position. Query and output row i live at row <see cref="Rows"/>[i] of their buffers. Preallocated per
/// scratch and refilled per pass, so a pass allocates nothing.
/// </summary>
internal sealed class AttentionRows(int capacity)
{
    public KvView[] Views { get; } = new KvView[capacity];

    public int[] Positions { get; } = new int[capacity];

    public int[] Rows { get; } = new int[capacity];

    public int Count { get; private set; }

    /// <summary>Sum over rows of the keys each one attends over (its position + 1).</summary>
    public long Keys { get; private set; }

    public void Clear()
    {
        Count = 0;
        Keys = 0;
    }

    public void Add(int row, in KvView view, int position)
    {
        Views[Count] = view;
        Positions[Count] = position;
        Rows[Count] = row;
        Count++;
        Keys += position + 1;
    }
}
