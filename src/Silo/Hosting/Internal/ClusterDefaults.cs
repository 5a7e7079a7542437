using System.Security.Cryptography.X509Certificates;
using Orleans.Configuration;
using Orleans.Connections.Security;

namespace KvCache.Silo.Hosting.Internal;

/// <summary>The Orleans settings this service starts from, shared by silos and gateways; configuration overrides them.</summary>
internal static class ClusterDefaults
{
    public const string MembershipSection = "Cluster:Membership";
    public const string MessagingSection = "Cluster:Messaging";
    public const string GatewaysSection = "Cluster:Gateways";

    /// <summary>
    /// Failure detection fast enough that a killed silo's sessions answer on another silo within about 2 s: a probe
    /// times out after 1 s, two missed probes and one vote declare a silo dead. Defunct silos leave the table after
    /// 10 minutes instead of piling up for a week.
    /// </summary>
    public static void ApplyMembership(ClusterMembershipOptions options)
    {
        options.ProbeTimeout = TimeSpan.FromSeconds(1);
        options.NumMissedProbesLimit = 2;
        options.NumVotesForDeathDeclaration = 1;
        options.TableRefreshTimeout = TimeSpan.FromSeconds(2);
        options.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(5);
        options.DefunctSiloExpiration = TimeSpan.FromMinutes(10);
        options.DefunctSiloCleanupPeriod = TimeSpan.FromMinutes(1);
    }

    /// <summary>
    /// A call to a silo that stopped answering fails after 2 s, so a gateway moves on to the session's next
    /// activation; the long calls (Append's prefill, spill, migration, drain) carry their own longer timeouts.
    /// </summary>
    public static void ApplyMessaging(MessagingOptions options) => options.ResponseTimeout = TimeSpan.FromSeconds(2);

    /// <summary>
    /// A gateway rereads the silos' gateway list every 2 s (Orleans' default: 1 min), so it stops sending through a
    /// silo the cluster has declared dead — one frozen, with its connections still open — within the failover timeout.
    /// </summary>
    public static void ApplyGateways(GatewayOptions options) => options.GatewayListRefreshPeriod = TimeSpan.FromSeconds(2);

    /// <summary>The cluster's TLS certificate, or null when TLS is off.</summary>
    public static X509Certificate2? Certificate(ClusterTlsOptions options) =>
        string.IsNullOrEmpty(options.CertificatePath)
            ? null
            : X509CertificateLoader.LoadPkcs12FromFile(options.CertificatePath, options.CertificatePassword);

    /// <summary>Mutual TLS where a peer is trusted exactly when it presents the cluster's own certificate.</summary>
    public static void RequireSameCertificate(TlsOptions tls, X509Certificate2 certificate)
    {
        tls.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        tls.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        tls.RemoteCertificateValidation = (remote, _, _) => remote.Thumbprint == certificate.Thumbprint;
    }
}
