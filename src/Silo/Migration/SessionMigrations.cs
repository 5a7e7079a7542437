using System.Diagnostics;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;

namespace KvCache.Silo.Migration;

/// <summary>Live migration of one session, as drain, rebalancing and the operator API ask for it.</summary>
public static class SessionMigrations
{
    private const int MaxAttempts = 50;
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// Moves the session to <paramref name="target"/> (null: the least loaded other silo) and waits until it is in
    /// memory there; the result's seconds span the whole time the session was unavailable.
    /// </summary>
    public static async Task<(MigrationResult Result, SessionInfo Session)> MoveAsync(
        IGrainFactory grains, SessionKey key, string? target, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var grain = grains.GetGrain<ISessionGrain>(SessionGrainKey.Format(key));
        var result = await grain.MigrateAsync(target, cancellationToken);

        // Reaches the new activation, which restores the snapshot before it answers; the old one, still leaving,
        // answers Moved. A large cache may take longer to restore than Orleans' response timeout: the activation
        // goes on restoring, and the next attempt waits for it again.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var session = await grain.GetInfoAsync();
                return (result with { Seconds = Stopwatch.GetElapsedTime(started).TotalSeconds }, session);
            }
            catch (Exception ex) when (ex is TimeoutException or SessionException { Code: SessionErrorCode.Moved } && attempt < MaxAttempts)
            {
                await Task.Delay(RetryDelay, cancellationToken);
            }
        }
    }
}
