using Orleans.Concurrency;
using KvCache.Silo.Placement;

namespace KvCache.Silo.Migration;

/// <summary>
/// One silo's operator controls, keyed by the silo's address (<see cref="SiloAddress.ToParsableString"/>) and always
/// activated on that silo (<see cref="SiloPinnedPlacement"/>).
/// </summary>
public interface ISiloControlGrain : IGrainWithStringKey
{
    /// <summary>The silo's load now.</summary>
    [AlwaysInterleave]
    Task<SiloLoad> GetLoadAsync();

    /// <summary>Moves every session in the silo's memory to the other active silos (spilling any that none takes),
    /// then stops the silo's process, as SIGTERM does.</summary>
    [ResponseTimeout("00:30:00")]
    Task<DrainResult> DrainAsync();
}

[GenerateSerializer, Immutable]
public sealed record DrainResult(int Moved, int Spilled);
