using System.Globalization;

namespace KvCache.Silo.Storage.Redis.Internal;

/// <summary>
/// Key names of one session. All share the hash tag {tenant/session}, so they live in one cluster slot and
/// the scripts may touch them together; the tenant index is the only key outside it. Names are built when
/// asked for, so an operation pays only for the keys it uses.
/// </summary>
internal readonly struct SessionKeys(string prefix, SessionKey key)
{
    private readonly string _root = $"{prefix}:{{{TenantPart(key.Tenant)}/{key.SessionId}}}:";

    /// <summary>Hash: model, codec, created (UTC ticks), and resident (silo name) while a silo holds the cache.</summary>
    public string Meta => _root + "meta";

    /// <summary>String of little-endian int32 tokens.</summary>
    public string Tokens => _root + "tokens";

    /// <summary>Hash of the committed snapshot: id, header.</summary>
    public string Snapshot => _root + "snap";

    /// <summary>Chunk i of snapshot id is ChunkPrefix + "id:i".</summary>
    public string ChunkPrefix => _root + "snap:";

    /// <summary>Set of the members "id:i" of every chunk written, committed or not, so delete can find them.</summary>
    public string Chunks => _root + "chunks";

    /// <summary>Hash of decode request id → start position.</summary>
    public string Requests => _root + "reqs";

    /// <summary>
    /// Counter of the session's epochs (INCR): its value is the current one, which fenced writes must carry. Never
    /// deleted, not even with the session, so no epoch is handed out twice for one key.
    /// </summary>
    public string Epoch => _root + "epoch";

    public string TenantIndex => TenantIndexKey(prefix, key.Tenant);

    public static string TenantIndexKey(string prefix, string tenant) => $"{prefix}:tenant:{{{TenantPart(tenant)}}}:sessions";

    /// <summary>
    /// A tenant as part of a key name: [A-Za-z0-9._-] as they are (so such tenants' keys read as before), every other
    /// character as the %XX of its UTF-8 bytes. Any tenant name is then a distinct key part that can forge no
    /// separator (':' '/') or hash tag ('{' '}').
    /// </summary>
    public static string TenantPart(string tenant)
    {
        if (tenant.All(IsKept))
        {
            return tenant;
        }

        var encoded = new System.Text.StringBuilder(tenant.Length * 3);
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(tenant))
        {
            if (b < 0x80 && IsKept((char)b))
            {
                encoded.Append((char)b);
            }
            else
            {
                encoded.Append('%').Append(b.ToString("X2", CultureInfo.InvariantCulture));
            }
        }

        return encoded.ToString();
    }

    private static bool IsKept(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.';

    public static string ChunkMember(long snapshotId, int index) =>
        string.Create(CultureInfo.InvariantCulture, $"{snapshotId}:{index}");
}
