using System.Text.Json.Nodes;
using KvCache.Contracts.V1;
using KvCache.GpuWorker;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.Testing.Processes;
using KvCache.Testing.Redis;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// What the gateway process makes of its configuration at start, as a real process: a model it cannot serve stops it
/// with one line and exit code 3 (never an unhandled exception), and so does a tenant name no store can hold (exit
/// code 2), while any other tenant name works; its settings files are read from its own folder whatever folder it is
/// started from.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class StartupIntegrationTests
{
    private static readonly string GatewayDll = Path.Combine(AppContext.BaseDirectory, "KvCache.Gateway.dll");
    private static readonly string DemoModels = Path.Combine(Path.GetTempPath(), "kvcache-gateway-test-models");

    [Theory]
    [InlineData("unsupported-dtype", "torch_dtype 'int8' is not supported")]
    [InlineData("fourier-under-bf16", "a fourier-calibrated model keeps f32 caches")]
    public async Task A_model_that_cannot_be_served_stops_the_gateway_with_one_line_and_exit_code_3(string fault, string reason)
    {
        var root = Directory.CreateTempSubdirectory("kvcache-bad-model-");
        try
        {
            var directory = Path.Combine(root.FullName, fault);
            ModelGenerator.Write(directory, ModelConfig.Demo with { VocabSize = 512, NumHiddenLayers = 2 }, seed: 3);
            List<string> settings = [$"--Models:Directories:0={directory}", $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{GatewayProcess.FreePort()}"];
            if (fault == "unsupported-dtype")
            {
                var config = Path.Combine(directory, "config.json");
                var json = JsonNode.Parse(await File.ReadAllTextAsync(config))!;
                json["torch_dtype"] = "int8";
                await File.WriteAllTextAsync(config, json.ToJsonString());
            }
            else
            {
                // A calibration file is enough for the load to refuse bf16 caches; its content is never read.
                await File.WriteAllTextAsync(Path.Combine(directory, "fourier.json"), "{}");
                settings.Add("--Models:CacheFormat=Bf16");
            }

            var gateway = new ServiceProcess("the gateway", GatewayDll);
            gateway.Start(settings);
            var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(90));

            Assert.True(exitCode == 3, $"exit code {exitCode}:\n{gateway.Output}");
            var line = gateway.Output.Split('\n').Single(l => l.StartsWith("error: ", StringComparison.Ordinal));
            Assert.StartsWith($"error: Model directory '{directory}' cannot be served: ", line, StringComparison.Ordinal);
            Assert.Contains(reason, line, StringComparison.Ordinal);
            Assert.DoesNotContain("Unhandled exception", gateway.Output, StringComparison.Ordinal);
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Settings_files_are_read_from_the_gateways_folder_whatever_folder_it_starts_in()
    {
        // An environment's settings file beside the gateway's dll, which only that environment reads.
        var environment = $"Startup{Guid.NewGuid():N}";
        var settingsFile = Path.Combine(AppContext.BaseDirectory, $"appsettings.{environment}.json");
        var elsewhere = Directory.CreateTempSubdirectory("kvcache-cwd-");
        var port = GatewayProcess.FreePort();
        await File.WriteAllTextAsync(settingsFile, """{ "Silo": { "SiloName": "named-by-the-app-folder" } }""");
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        try
        {
            var process = new ServiceProcess("the gateway", GatewayDll);
            process.Start(
                [$"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{port}", $"--Models:DemoModelDirectory={DemoModels}"],
                new Dictionary<string, string> { ["DOTNET_ENVIRONMENT"] = environment },
                workingDirectory: elsewhere.FullName);
            try
            {
                var client = new KvCacheClient(channel);
                await WaitUntilServingAsync(client, process);
                var session = await client.CreateSessionAsync(new CreateSessionRequest());
                await client.AppendAsync(new AppendRequest { SessionId = session.Id, TokenIds = { 1, 2, 3 } });
                var info = await client.GetSessionAsync(new GetSessionRequest { SessionId = session.Id });
                Assert.Equal("named-by-the-app-folder", info.OwnerSilo);
            }
            finally
            {
                await process.StopAsync();
            }
        }
        finally
        {
            File.Delete(settingsFile);
            elsewhere.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_tenant_named_by_its_email_address_is_served_from_redis()
    {
        const string key = "key-of-alice";
        await using var redis = await RedisServer.StartAsync(TestPorts.Redis);
        await using var gateway = await InProcessGateway.StartAsync(new Dictionary<string, string?>
        {
            ["Spill:Redis:Endpoint"] = redis.Endpoint,
            ["Models:DemoModelDirectory"] = DemoModels,
            ["Auth:ApiKeys:0:Tenant"] = "alice@example.com",
            ["Auth:ApiKeys:0:Key"] = key,
        });
        using var channel = gateway.CreateChannel();
        var client = new KvCacheClient(channel);
        var auth = new Grpc.Core.Metadata { { "authorization", $"Bearer {key}" } };

        var session = await client.CreateSessionAsync(new CreateSessionRequest { SessionId = "inbox" }, auth);
        await client.AppendAsync(new AppendRequest { SessionId = "inbox", TokenIds = { 1, 2, 3 } }, auth);
        var decoded = await DecodeCalls.ReadAllAsync(client.Decode(DecodeCalls.Greedy("inbox", 4, requestId: "d1"), auth));
        await client.SpillSessionAsync(new SpillSessionRequest { SessionId = "inbox" }, auth);

        Assert.Equal(4, decoded.Count);
        Assert.Equal(7, (await client.GetSessionAsync(new GetSessionRequest { SessionId = "inbox" }, auth)).Position);
        Assert.Equal(["inbox"], (await client.ListSessionsAsync(new ListSessionsRequest(), auth)).Sessions.Select(s => s.Id));
        await client.DeleteSessionAsync(new DeleteSessionRequest { SessionId = session.Id }, auth);
    }

    [Fact]
    public async Task A_tenant_name_no_store_can_hold_refuses_the_start_naming_the_setting()
    {
        var gateway = new ServiceProcess("the gateway", GatewayDll);
        gateway.Start([
            $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{GatewayProcess.FreePort()}",
            $"--Auth:ApiKeys:0:Tenant={new string('t', 129)}",
            "--Auth:ApiKeys:0:Key=some-key",
        ]);
        var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(90));

        Assert.True(exitCode == 2, $"exit code {exitCode}:\n{gateway.Output}");
        Assert.Contains("error: Auth:ApiKeys:0:Tenant is longer than 128 characters.", gateway.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_redis_ca_file_refuses_the_start_naming_the_setting()
    {
        string missing = Path.Combine(Path.GetTempPath(), "kvcache-absent-" + Guid.NewGuid().ToString("N"), "ca.pem");
        var gateway = new ServiceProcess("the gateway", GatewayDll);
        gateway.Start([
            $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{GatewayProcess.FreePort()}",
            "--Spill:Redis:Endpoint=127.0.0.1:6379",
            "--Spill:Redis:UseTls=true",
            $"--Spill:Redis:TlsCaCertificate={missing}",
        ]);
        var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(90));

        Assert.True(exitCode == 2, $"exit code {exitCode}:\n{gateway.Output}");
        Assert.Contains($"error: Spill:Redis: TlsCaCertificate: no file at '{missing}'.", gateway.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", gateway.Output, StringComparison.Ordinal);
    }

    private static async Task WaitUntilServingAsync(KvCacheClient client, ServiceProcess process)
    {
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (true)
        {
            if (process.ExitCode is { } exitCode)
            {
                throw new InvalidOperationException($"The gateway exited with {exitCode}:\n{process.Output}");
            }

            try
            {
                await client.ListModelsAsync(new ListModelsRequest(), deadline: DateTime.UtcNow.AddSeconds(5));
                return;
            }
            catch (Grpc.Core.RpcException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }
}
