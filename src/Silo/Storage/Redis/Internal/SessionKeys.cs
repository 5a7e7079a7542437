using System.Globalization;

namespace KvCache.Silo.Storage.Redis.Internal;

/// <summary>
/// Key names of one session. All share the hash tag {tenant/session}, so they live in one cluster slot and
/// the scripts may touch them together; the tenant index is the only key outside it.
/// </summary>
internal readonly struct SessionKeys
{
    public SessionKeys(string prefix, SessionKey key)
    {
        string root = $"{prefix}:{{{key.Tenant}/{key.SessionId}}}:";
        Meta = root + "meta";
        Tokens = root + "tokens";
        Snapshot = root + "snap";
        ChunkPrefix = root + "snap:";
        Chunks = root + "chunks";
        Requests = root + "reqs";
        Directory = root + "dir";
        Epoch = root + "epoch";
        TenantIndex = TenantIndexKey(prefix, key.Tenant);
    }

    /// <summary>Hash: model, codec, created (UTC ticks).</summary>
    public string Meta { get; }

    /// <summary>String of little-endian int32 tokens.</summary>
    public string Tokens { get; }

    /// <summary>Hash of the committed snapshot: id, header.</summary>
    public string Snapshot { get; }

    /// <summary>Chunk i of snapshot id is ChunkPrefix + "id:i".</summary>
    public string ChunkPrefix { get; }

    /// <summary>Set of the members "id:i" of every chunk written, committed or not, so delete can find them.</summary>
    public string Chunks { get; }

    /// <summary>Hash of decode request id → start position.</summary>
    public string Requests { get; }

    /// <summary>Hash of the grain directory entry: silo, act, epoch (see RedisGrainDirectory).</summary>
    public string Directory { get; }

    /// <summary>Counter of the directory's epochs; never deleted, so no epoch is handed out twice.</summary>
    public string Epoch { get; }

    public string TenantIndex { get; }

    public static string TenantIndexKey(string prefix, string tenant) => $"{prefix}:tenant:{{{tenant}}}:sessions";

    public static string ChunkMember(long snapshotId, int index) =>
        string.Create(CultureInfo.InvariantCulture, $"{snapshotId}:{index}");
}
