using System.Collections.Concurrent;

namespace KvCache.Silo.Placement;

/// <summary>The silos' loads in process memory: one process's silo (embedded mode), or in-process test clusters.</summary>
public sealed class InMemorySiloLoadTable : ISiloLoadTable
{
    private readonly ConcurrentDictionary<SiloAddress, SiloLoad> _loads = new();

    public Task PublishAsync(SiloLoad load, CancellationToken cancellationToken)
    {
        _loads[load.Address] = load;
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<SiloLoad>> ReadAllAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<SiloLoad>>(_loads.Values.ToArray());

    public Task RemoveAsync(SiloAddress silo, CancellationToken cancellationToken)
    {
        _loads.TryRemove(silo, out _);
        return Task.CompletedTask;
    }
}
