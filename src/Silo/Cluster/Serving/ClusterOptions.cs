using System.ComponentModel.DataAnnotations;
using KvCache.Silo.Cluster.Membership;

namespace KvCache.Silo.Cluster.Serving;

/// <summary>A cluster silo's settings (section <see cref="SectionName"/>). <see cref="Secret"/> is never printed.</summary>
public sealed class ClusterOptions : IValidatableObject
{
    public const string SectionName = "Cluster";

    /// <summary>
    /// Shared by the gateways and silos of one cluster: every call to a silo's internal endpoint must carry it.
    /// Pass it through the environment or a mounted secret, never a stored file.
    /// </summary>
    public string Secret { get; set; } = "";

    /// <summary>
    /// <c>host:port</c> gateways reach this silo at (the pod IP in Kubernetes); defaults to the host and port of
    /// <c>Kestrel:Endpoints:Grpc:Url</c>.
    /// </summary>
    public string AdvertisedEndpoint { get; set; } = "";

    /// <summary>
    /// When another silo joins, this silo moves it up to this many idle sessions (its fair share); 0 turns
    /// rebalancing off. Bounded so a join never floods the newcomer or the spill store.
    /// </summary>
    [Range(0, 10_000)]
    public int MaxSessionsMovedPerJoin { get; set; } = 16;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Secret.Length < 16)
        {
            yield return new ValidationResult($"{SectionName}:Secret must be at least 16 characters.");
        }

        string? error = null;
        try
        {
            _ = new SiloAddress(AdvertisedEndpoint, 1);
            int colon = AdvertisedEndpoint.LastIndexOf(':');
            string host = colon > 0 ? AdvertisedEndpoint[..colon].Trim('[', ']') : "";
            if (!int.TryParse(AdvertisedEndpoint.AsSpan(colon + 1), out int port) || port is <= 0 or > 65535
                || host is "" or "0.0.0.0" or "::" or "*" or "+")
            {
                error = $"{SectionName}:AdvertisedEndpoint '{AdvertisedEndpoint}' must be a reachable host:port (no wildcard address, no port 0).";
            }
        }
        catch (ArgumentException e)
        {
            error = $"{SectionName}:AdvertisedEndpoint: {e.Message}";
        }

        if (error is not null)
        {
            yield return new ValidationResult(error);
        }
    }

    public override string ToString() => $"AdvertisedEndpoint={AdvertisedEndpoint}, MaxSessionsMovedPerJoin={MaxSessionsMovedPerJoin}, Secret=***";
}
