using System.Globalization;
using KvCache.Silo.Cluster.Directory.Internal;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Internal;
using KvCache.Silo.Storage.Redis;
using KvCache.Silo.Storage.Redis.Internal;

namespace KvCache.Silo.Cluster.Directory;

/// <summary>
/// The grain directory on Redis, owned by <see cref="RedisSessionStore"/> (same connection and key prefix,
/// whose writes it fences): every change is one Lua script. Layout in <see cref="DirectoryScripts"/>.
/// </summary>
public sealed class RedisGrainDirectory : IGrainDirectory
{
    private readonly RedisClient _client;
    private readonly string _prefix;

    internal RedisGrainDirectory(RedisClient client, string prefix)
    {
        _client = client;
        _prefix = prefix;
    }

    public async ValueTask<GrainAddress> RegisterAsync(GrainAddress address, GrainAddress? previous, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        StoreArguments.ValidateKey(address.GrainId);
        var k = new SessionKeys(_prefix, address.GrainId);
        var reply = await _client.EvalAsync(
            DirectoryScripts.Register,
            [k.Directory, k.Epoch],
            [address.SiloAddress.ToString(), address.ActivationId.ToString(), previous?.ActivationId.ToString() ?? ""],
            cancellationToken).ConfigureAwait(false);
        return Parse(address.GrainId, reply.AsArray())!;
    }

    public async ValueTask<GrainAddress?> LookupAsync(SessionKey grainId, CancellationToken cancellationToken = default)
    {
        StoreArguments.ValidateKey(grainId);
        var k = new SessionKeys(_prefix, grainId);
        var reply = await _client.ExecuteAsync(["HMGET", k.Directory, "silo", "act", "epoch"], cancellationToken).ConfigureAwait(false);
        return Parse(grainId, reply.AsArray());
    }

    public async ValueTask<bool> UnregisterAsync(GrainAddress address, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        StoreArguments.ValidateKey(address.GrainId);
        var k = new SessionKeys(_prefix, address.GrainId);
        var reply = await _client.EvalAsync(DirectoryScripts.Unregister, [k.Directory], [address.ActivationId.ToString()], cancellationToken).ConfigureAwait(false);
        return reply.AsInt64() == 1;
    }

    private static GrainAddress? Parse(SessionKey grainId, IReadOnlyList<RedisReply> fields) =>
        fields[0].IsNull || fields[1].IsNull || fields[2].IsNull
            ? null
            : new GrainAddress(
                grainId,
                SiloAddress.Parse(fields[0].AsString()!),
                ActivationId.Parse(fields[1].AsString()!),
                long.Parse(fields[2].AsString()!, CultureInfo.InvariantCulture));
}
