using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.Options;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>Reads a session's token log (the source of truth) straight from the cluster's Redis, as the silos store it.</summary>
internal static class SessionLogs
{
    public static async Task<int[]> ReadAsync(string redisEndpoint, string tenant, string sessionId)
    {
        var options = Options.Create(new RedisStoreOptions { Endpoint = redisEndpoint });
        await using var connection = new RedisConnection(options);
        var store = new RedisSessionStore(connection, options);
        var key = new SessionKey(tenant, sessionId);
        var log = new int[await store.GetTokenCountAsync(key)];
        var read = await store.ReadTokensAsync(key, 0, log);
        return log[..read];
    }
}
