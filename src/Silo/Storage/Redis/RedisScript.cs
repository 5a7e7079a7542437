using System.Security.Cryptography;
using System.Text;

namespace KvCache.Silo.Storage.Redis;

/// <summary>A Lua script run with EVALSHA; the client falls back to EVAL (which caches it) on NOSCRIPT.</summary>
public sealed class RedisScript
{
    public RedisScript(string source)
    {
        ArgumentException.ThrowIfNullOrEmpty(source);
        Source = source;
        Sha1 = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(source)));
    }

    public string Source { get; }

    /// <summary>Lower-case hex SHA-1 of the source, as Redis names cached scripts.</summary>
    public string Sha1 { get; }
}
