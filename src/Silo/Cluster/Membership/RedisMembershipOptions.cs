using KvCache.Silo.Storage.Internal;
using KvCache.Silo.Storage.Redis;

namespace KvCache.Silo.Cluster.Membership;

/// <summary>Settings of <see cref="RedisMembershipTable"/> (configuration section <see cref="SectionName"/>).</summary>
public sealed class RedisMembershipOptions : RedisClientOptions
{
    public const string SectionName = "Cluster:Membership:Redis";

    /// <summary>First part of every key; the spill store's prefix, so one Redis holds the whole cluster.</summary>
    public string KeyPrefix { get; set; } = "kvc";

    /// <summary>Silos with the same cluster id form one cluster.</summary>
    public string ClusterId { get; set; } = "default";

    public override void Validate()
    {
        base.Validate();
        StoreArguments.ValidateId(KeyPrefix, nameof(KeyPrefix));
        StoreArguments.ValidateId(ClusterId, nameof(ClusterId));
    }

    public override string ToString() => $"{base.ToString()}, KeyPrefix={KeyPrefix}, ClusterId={ClusterId}";
}
