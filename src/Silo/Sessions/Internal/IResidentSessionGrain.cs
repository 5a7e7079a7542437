using Orleans.Concurrency;

namespace KvCache.Silo.Sessions.Internal;

/// <summary>What a silo asks of the sessions whose caches it holds.</summary>
internal interface IResidentSessionGrain : IGrainWithStringKey
{
    /// <summary>
    /// Snapshots and frees the cache and ends the activation if no call is running on the session; false otherwise.
    /// Interleaves, so a session that is waiting for memory itself is never waited on.
    /// </summary>
    [AlwaysInterleave]
    Task<bool> TryReleaseAsync(string reason);
}
