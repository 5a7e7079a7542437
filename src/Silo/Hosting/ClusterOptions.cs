using System.ComponentModel.DataAnnotations;

namespace KvCache.Silo.Hosting;

/// <summary>
/// How silos and gateways form a cluster (section <see cref="SectionName"/>). Orleans' own settings live beside these:
/// <c>Cluster:Membership</c> binds Orleans' <c>ClusterMembershipOptions</c> and <c>Cluster:Messaging</c> its
/// messaging options.
/// </summary>
public sealed class ClusterOptions
{
    public const string SectionName = "Cluster";

    /// <summary>Orleans' cluster id: silos and gateways with the same id and Redis form one cluster.</summary>
    [Required]
    [RegularExpression("^[A-Za-z0-9._-]{1,64}$")]
    public string ClusterId { get; set; } = "kvcache";

    /// <summary>Orleans' service id: stays the same across deployments of the service.</summary>
    [Required]
    [RegularExpression("^[A-Za-z0-9._-]{1,64}$")]
    public string ServiceId { get; set; } = "kvcache";

    /// <summary>Port silos talk to each other on. A single-process gateway with no Redis takes a free loopback port
    /// unless this is set.</summary>
    [Range(0, 65535)]
    public int SiloPort { get; set; } = 11111;

    /// <summary>Port gateways (Orleans clients) connect to a silo on (0: none). A single-process gateway with no Redis
    /// listens on none unless this is set.</summary>
    [Range(0, 65535)]
    public int GatewayPort { get; set; } = 30000;

    /// <summary>
    /// The IP address other silos and gateways reach this silo at (the pod IP in Kubernetes); default: this host's
    /// first non-loopback address.
    /// </summary>
    public string? AdvertisedAddress { get; set; }

    /// <summary>How often a silo publishes its load (sessions, free cache memory) and reads the others'.</summary>
    public TimeSpan LoadPublishPeriod { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// When another silo joins, this silo moves it up to this many idle sessions (its fair share); 0 turns
    /// rebalancing off. Bounded so a join never floods the newcomer or the spill store.
    /// </summary>
    [Range(0, 10_000)]
    public int MaxSessionsMovedPerJoin { get; set; } = 16;

    /// <summary>
    /// How long a gateway keeps sending a call that is safe to repeat (a read, a Decode with a request id, a call
    /// refused because its session was moving) while the session's silo fails and its sessions come back elsewhere.
    /// </summary>
    public TimeSpan FailoverTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>TLS between silos and from gateways to silos (Orleans' Connections.Security); off when no certificate is set.</summary>
    public ClusterTlsOptions Tls { get; set; } = new();
}

/// <summary>
/// Mutual TLS on Orleans' connections: every silo and gateway presents the certificate and accepts only peers whose
/// certificate has the same thumbprint, so a process without the cluster's certificate can neither join nor call.
/// </summary>
public sealed class ClusterTlsOptions
{
    /// <summary>A PKCS#12 (.pfx) file with the certificate and its private key (a mounted secret).</summary>
    public string? CertificatePath { get; set; }

    /// <summary>The .pfx file's password; give it through the environment (<c>Cluster__Tls__CertificatePassword</c>).</summary>
    public string? CertificatePassword { get; set; }

    public override string ToString() => $"CertificatePath={CertificatePath ?? "(none)"}, CertificatePassword={(string.IsNullOrEmpty(CertificatePassword) ? "(none)" : "***")}";
}
