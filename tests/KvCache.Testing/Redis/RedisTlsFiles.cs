using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace KvCache.Testing.Redis;

/// <summary>
/// A throwaway private CA and the certificates it issued, as PEM files in one folder: a server certificate for
/// "localhost" and 127.0.0.1 and a client certificate (for <c>tls-auth-clients yes</c>). Keys are unencrypted
/// ECDSA P-256 (quick to make); everything is valid from an hour ago for a day.
/// </summary>
public sealed record RedisTlsFiles(string CaCertificate, string ServerCertificate, string ServerKey, string ClientCertificate, string ClientKey)
{
    /// <summary>The server certificate's DNS name (it also carries the IP address 127.0.0.1).</summary>
    public const string ServerName = "localhost";

    /// <summary>Makes a new CA named <paramref name="name"/> and its certificates, written to <paramref name="directory"/> as "name-*.pem".</summary>
    public static RedisTlsFiles Create(string directory, string name = "kvcache-test")
    {
        var notBefore = DateTimeOffset.UtcNow.AddHours(-1);
        var notAfter = notBefore.AddDays(1);
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest($"CN={name} CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, critical: false));
        using var ca = caRequest.CreateSelfSigned(notBefore, notAfter);

        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName(ServerName);
        names.AddIpAddress(IPAddress.Loopback);
        var (serverCertificate, serverKey) = Issue(ca, $"CN={name} server", "1.3.6.1.5.5.7.3.1", names.Build(), notBefore, notAfter);
        var (clientCertificate, clientKey) = Issue(ca, $"CN={name} client", "1.3.6.1.5.5.7.3.2", null, notBefore, notAfter);

        string Write(string file, string pem)
        {
            string path = Path.Combine(directory, $"{name}-{file}.pem");
            File.WriteAllText(path, pem);
            return path;
        }

        return new RedisTlsFiles(
            Write("ca", ca.ExportCertificatePem()),
            Write("server", serverCertificate),
            Write("server-key", serverKey),
            Write("client", clientCertificate),
            Write("client-key", clientKey));
    }

    /// <summary>A certificate for <paramref name="usage"/> (an extended key usage OID) signed by <paramref name="ca"/>, and its key, as PEM.</summary>
    private static (string Certificate, string Key) Issue(
        X509Certificate2 ca, string subject, string usage, X509Extension? names, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: false, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        if (names is not null)
        {
            request.CertificateExtensions.Add(names);
        }

        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F; // a positive serial number, as RFC 5280 asks
        using var certificate = request.Create(ca, notBefore, notAfter, serial);
        return (certificate.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }
}
