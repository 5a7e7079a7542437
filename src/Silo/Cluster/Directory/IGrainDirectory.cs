using KvCache.Silo.Storage;

namespace KvCache.Silo.Cluster.Directory;

/// <summary>
/// Which activation owns each session, cluster-wide (Orleans' IGrainDirectory): at most one entry per grain,
/// changed only by compare-and-swap on the activation id. Each entry carries an epoch that fences the spill
/// store: a write for the session succeeds only with the current entry's epoch (<see cref="StaleEpochException"/>).
/// </summary>
/// <remarks>
/// The directory does not consult membership: taking over an entry of a dead silo is the caller's decision,
/// made by passing that entry as <c>previous</c>.
/// </remarks>
public interface IGrainDirectory
{
    /// <summary>
    /// Registers <paramref name="address"/> if the grain has no entry, or if its entry is the activation of
    /// <paramref name="previous"/>; then the epoch is incremented. Registering the activation that already owns
    /// the grain changes nothing.
    /// </summary>
    /// <returns>
    /// The entry now registered, with its epoch: <paramref name="address"/>'s activation if it won, otherwise
    /// the current owner (compare with <see cref="GrainAddress.Matches"/>).
    /// </returns>
    ValueTask<GrainAddress> RegisterAsync(GrainAddress address, GrainAddress? previous, CancellationToken cancellationToken = default);

    /// <summary>The grain's entry, or null if none.</summary>
    ValueTask<GrainAddress?> LookupAsync(SessionKey grainId, CancellationToken cancellationToken = default);

    /// <summary>Removes the grain's entry if it is <paramref name="address"/>'s activation; false otherwise.</summary>
    ValueTask<bool> UnregisterAsync(GrainAddress address, CancellationToken cancellationToken = default);
}
