using System.ComponentModel.DataAnnotations;

namespace KvCache.Gateway.Routing;

public enum ClusterMode
{
    /// <summary>The gateway hosts one silo in process (the default, and the README's service).</summary>
    SingleNode,

    /// <summary>The gateway routes every call to silo processes found in Redis membership.</summary>
    Routed,
}

/// <summary>How the gateway reaches silos (section <see cref="SectionName"/>). <see cref="Secret"/> is never printed.</summary>
public sealed class RoutingOptions : IValidatableObject
{
    public const string SectionName = "Cluster";

    public ClusterMode Mode { get; set; } = ClusterMode.SingleNode;

    /// <summary>The cluster's shared secret, sent on every call to a silo (Routed mode).</summary>
    public string Secret { get; set; } = "";

    /// <summary>How often membership and the silos' load are read.</summary>
    public TimeSpan RefreshPeriod { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How long one silo call may take to answer before the stats of that silo count as missing.</summary>
    public TimeSpan StatsTimeout { get; set; } = TimeSpan.FromSeconds(2);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Mode == ClusterMode.Routed && Secret.Length < 16)
        {
            yield return new ValidationResult($"{SectionName}:Secret must be at least 16 characters in Routed mode.");
        }

        if (RefreshPeriod <= TimeSpan.Zero || StatsTimeout <= TimeSpan.Zero)
        {
            yield return new ValidationResult($"{SectionName}:RefreshPeriod and StatsTimeout must be positive.");
        }
    }

    public override string ToString() => $"Mode={Mode}, RefreshPeriod={RefreshPeriod}, StatsTimeout={StatsTimeout}, Secret=***";
}
