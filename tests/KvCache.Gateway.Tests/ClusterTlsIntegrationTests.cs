using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using Xunit;
using KvCache.Testing.Processes;

namespace KvCache.Gateway.Tests;

/// <summary>
/// Orleans' connections under mutual TLS (<c>Cluster:Tls</c>), successor of the old internal endpoint's cluster secret:
/// silos and a gateway holding the cluster's certificate serve, while a gateway presenting another certificate,
/// started the same way against the same Redis, reaches no silo.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class ClusterTlsIntegrationTests : IDisposable
{
    private const string Password = "tls-test-pfx-password-0123";
    private static readonly int[] Prompt = Enumerable.Range(0, 16).Select(i => (i * 331 + 17) % 8192).ToArray();

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("kvcache-tls-test-");

    [Fact]
    public async Task Only_processes_with_the_cluster_certificate_join_and_call()
    {
        var clusterCertificate = WriteCertificate("cluster");
        var otherCertificate = WriteCertificate("intruder");
        await using var cluster = await ProcessCluster.StartAsync(silos: 2, Tls(clusterCertificate));
        var client = cluster.Gateway.Client;
        await client.CreateSessionAsync(new CreateSessionRequest { SessionId = "over-tls" });
        await client.AppendAsync(new AppendRequest { SessionId = "over-tls", TokenIds = { Prompt } });
        Assert.Equal(5, (await DecodeCalls.GreedyTokensAsync(client, "over-tls", 5)).Length);

        // The same routed gateway with another certificate: its calls never reach a silo (or it gives up and exits).
        var port = GatewayProcess.FreePort();
        var intruder = new ServiceProcess("the intruding gateway", Path.Combine(AppContext.BaseDirectory, "KvCache.Gateway.dll"));
        intruder.Start(
        [
            $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{port}",
            $"--Kestrel:Endpoints:OpenAI:Url=http://127.0.0.1:{GatewayProcess.FreePort()}",
            $"--Spill:Redis:Endpoint={cluster.RedisEndpoint}",
            "--Cluster:Mode=Routed",
            .. Tls(otherCertificate),
        ]);
        try
        {
            using var channel = GrpcChannel.ForAddress(new Uri($"http://127.0.0.1:{port}"));
            var intruding = new KvCacheClient(channel);
            var refused = 0;
            for (var deadline = DateTime.UtcNow.AddSeconds(15); DateTime.UtcNow < deadline; refused++)
            {
                var read = intruding.GetSessionAsync(new GetSessionRequest { SessionId = "over-tls" }, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(3)));
                await Assert.ThrowsAsync<RpcException>(() => read.ResponseAsync);
                await Task.Delay(500);
            }

            Assert.True(refused > 0);
        }
        finally
        {
            await intruder.DisposeAsync();
        }

        // The TLS handshakes with the silos fail on the certificates, not on anything else.
        Assert.Contains("The remote certificate was rejected", intruder.Output);

        // The certificate's password appears in no process's output.
        Assert.All(cluster.Silos, s => Assert.DoesNotContain(Password, s.Output));
        Assert.DoesNotContain(Password, cluster.Gateway.Output);
        Assert.DoesNotContain(Password, intruder.Output);
    }

    public void Dispose() => _folder.Delete(recursive: true);

    private static string[] Tls(string certificate) =>
        [$"--Cluster:Tls:CertificatePath={certificate}", $"--Cluster:Tls:CertificatePassword={Password}"];

    /// <summary>A self-signed certificate with its private key, as a password-protected .pfx file.</summary>
    private string WriteCertificate(string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN=kvcache-{name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var path = Path.Combine(_folder.FullName, $"{name}.pfx");
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pkcs12, Password));
        return path;
    }
}
