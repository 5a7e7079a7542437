using System.Collections.Concurrent;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Internal;

namespace KvCache.Silo.Cluster.Directory;

/// <summary>
/// The grain directory in process memory, owned by <see cref="InMemorySessionStore"/> (whose writes it fences):
/// for one process hosting one or several silos.
/// </summary>
public sealed class InMemoryGrainDirectory : IGrainDirectory
{
    private readonly ConcurrentDictionary<SessionKey, Slot> _slots = new();

    internal InMemoryGrainDirectory()
    {
    }

    public ValueTask<GrainAddress> RegisterAsync(GrainAddress address, GrainAddress? previous, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        StoreArguments.ValidateKey(address.GrainId);
        var slot = _slots.GetOrAdd(address.GrainId, _ => new Slot());
        lock (slot)
        {
            if (slot.Entry is { } current && (current.Matches(address) || !current.Matches(previous)))
            {
                return ValueTask.FromResult(current);
            }

            // The epoch counter outlives the entry, so an epoch is never handed out twice.
            slot.LastEpoch++;
            slot.Entry = address with { Epoch = slot.LastEpoch };
            return ValueTask.FromResult(slot.Entry);
        }
    }

    public ValueTask<GrainAddress?> LookupAsync(SessionKey grainId, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(grainId);
        if (!_slots.TryGetValue(grainId, out var slot))
        {
            return ValueTask.FromResult<GrainAddress?>(null);
        }

        lock (slot)
        {
            return ValueTask.FromResult(slot.Entry);
        }
    }

    public ValueTask<bool> UnregisterAsync(GrainAddress address, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        StoreArguments.ValidateKey(address.GrainId);
        if (!_slots.TryGetValue(address.GrainId, out var slot))
        {
            return ValueTask.FromResult(false);
        }

        lock (slot)
        {
            if (slot.Entry is not { } current || !current.Matches(address))
            {
                return ValueTask.FromResult(false);
            }

            slot.Entry = null;
            return ValueTask.FromResult(true);
        }
    }

    /// <summary>Whether <paramref name="epoch"/> is the grain's registered epoch: the in-memory store's fence.</summary>
    internal bool IsCurrent(SessionKey grainId, long epoch)
    {
        if (!_slots.TryGetValue(grainId, out var slot))
        {
            return false;
        }

        lock (slot)
        {
            return slot.Entry?.Epoch == epoch;
        }
    }

    private sealed class Slot
    {
        public GrainAddress? Entry { get; set; }

        public long LastEpoch { get; set; }
    }
}
