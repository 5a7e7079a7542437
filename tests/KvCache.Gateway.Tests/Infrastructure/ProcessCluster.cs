using Grpc.Core;
using KvCache.Contracts.Admin.V1;
using KvCache.GpuWorker;
using KvCache.Testing.Redis;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// A cluster of real processes on a real redis-server: Orleans silo processes (started, stopped, killed one by one)
/// clustered through Orleans' Redis membership and grain directory, and gateway processes in Routed mode (Orleans
/// clients of the silos). Failure detection is short, so a killed silo is declared dead within seconds.
/// </summary>
public sealed class ProcessCluster : IAsyncDisposable
{
    /// <summary>
    /// Large enough that 200 decode steps take a good fraction of a second: a kill lands mid-stream.
    /// Generated once per machine, deterministically.
    /// </summary>
    private static readonly ModelConfig DecodeModel = ModelConfig.Demo with
    {
        VocabSize = 8192,
        HiddenSize = 512,
        IntermediateSize = 1024,
        NumHiddenLayers = 8,
        NumAttentionHeads = 8,
        NumKeyValueHeads = 8,
        HeadDim = 64,
    };

    private readonly RedisServer _redis;
    private readonly string[] _common;
    private readonly Metadata? _gatewayHeaders;

    private ProcessCluster(RedisServer redis, string modelDirectory, string[] settings, Metadata? gatewayHeaders)
    {
        _redis = redis;
        _gatewayHeaders = gatewayHeaders;
        _common =
        [
            $"--Spill:Redis:Endpoint={redis.Endpoint}",

            // Orleans' failure detection, as the service ships it (stated here so the tests do not depend on the
            // defaults): a probe times out after 1 s, two missed probes and one vote declare a silo dead, and a call
            // to a silo that stopped answering fails after 2 s, so the caller moves on to the session's next activation.
            "--Cluster:Membership:ProbeTimeout=00:00:01",
            "--Cluster:Membership:NumMissedProbesLimit=2",
            "--Cluster:Membership:NumVotesForDeathDeclaration=1",
            "--Cluster:Membership:TableRefreshTimeout=00:00:02",
            "--Cluster:Messaging:ResponseTimeout=00:00:02",
            $"--Models:Directories:0={modelDirectory}",
            "--Models:CacheBudgetMiB=64",
            .. settings,
        ];
    }

    public List<SiloProcess> Silos { get; } = [];

    /// <summary>Every gateway process; <see cref="Gateway"/> is the first.</summary>
    public List<GatewayProcess> Gateways { get; } = [];

    public GatewayProcess Gateway => Gateways[0];

    public string RedisEndpoint => _redis.Endpoint;

    /// <param name="settings">Extra settings of every process, after the cluster's own (so these win).</param>
    /// <param name="modelDirectory">The model the silos serve (default: the generated decode model).</param>
    /// <param name="gatewayHeaders">Metadata of the calls that wait for the cluster (ListModels, ListSilos): an admin
    /// API key when keys are configured.</param>
    public static async Task<ProcessCluster> StartAsync(int silos, string[]? settings = null, string? modelDirectory = null, Metadata? gatewayHeaders = null)
    {
        var redis = await RedisServer.StartAsync(TestPorts.Redis);
        var cluster = new ProcessCluster(redis, modelDirectory ?? EnsureModel(), settings ?? [], gatewayHeaders);
        try
        {
            await Task.WhenAll(Enumerable.Range(0, silos).Select(_ => cluster.AddSiloAsync()));
            await cluster.AddGatewayAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    public SiloProcess Silo(string name) => Silos.Single(s => s.Name == name);

    /// <summary>Starts one more silo (named silo-N in start order) and waits until Orleans lists it as active.</summary>
    public async Task<SiloProcess> AddSiloAsync()
    {
        SiloProcess silo;
        lock (Silos)
        {
            silo = new SiloProcess($"silo-{Silos.Count}", _common);
            Silos.Add(silo);
        }

        await silo.StartAsync();
        return silo;
    }

    /// <summary>
    /// Starts one more routing gateway and waits until, through it, every running silo is an active member that has
    /// reported its load: then placement (by load or by a hint naming a silo) can choose any of them.
    /// </summary>
    public async Task<GatewayProcess> AddGatewayAsync()
    {
        var gateway = new GatewayProcess(GatewayProcess.FreePort(), [.. _common, "--Cluster:Mode=Routed"]);
        lock (Gateways)
        {
            Gateways.Add(gateway);
        }

        await gateway.StartAsync(_gatewayHeaders);
        var admin = new AdminClient(gateway.Channel);
        var running = Silos.Where(s => s.IsRunning).Select(s => s.Name).Order().ToList();
        while (true)
        {
            var listed = (await admin.ListSilosAsync(new ListSilosRequest(), new CallOptions(_gatewayHeaders))).Silos;
            if (running.SequenceEqual(listed.Where(s => s.Status == "Active" && s.CacheBytesTotal > 0).Select(s => s.Name).Order()))
            {
                break;
            }

            await Task.Delay(100);
        }

        // Each silo reads the others' loads (and so their names) every 250 ms.
        await Task.Delay(TimeSpan.FromSeconds(1));
        return gateway;
    }

    /// <summary>A client of the first gateway's operator API (dev mode: every caller holds the admin role).</summary>
    public AdminClient Admin => new(Gateway.Channel);

    /// <summary>The cluster's silos as the operator API lists them (members that left or died included).</summary>
    public async Task<IReadOnlyList<KvCache.Contracts.Admin.V1.Silo>> ListSilosAsync() =>
        (await Admin.ListSilosAsync(new ListSilosRequest(), new CallOptions(_gatewayHeaders))).Silos;

    public async ValueTask DisposeAsync()
    {
        // For diagnosis: $KVCACHE_TEST_LOGS keeps every process's output, one folder per cluster.
        if (Environment.GetEnvironmentVariable("KVCACHE_TEST_LOGS") is { Length: > 0 } logs)
        {
            var folder = Directory.CreateDirectory(Path.Combine(logs, $"{DateTime.UtcNow:HHmmss}-redis-{_redis.Port}")).FullName;
            var gateways = Gateways.Select((g, i) => ($"gateway-{i}", $"gRPC port {g.Port}\n{g.Output}"));
            var silos = Silos.Select(s => (s.Name, $"silo port {s.SiloPort}, gateway port {s.GatewayPort}, health port {s.HealthPort}\n{s.Output}"));
            foreach (var (name, output) in gateways.Concat(silos))
            {
                await File.WriteAllTextAsync(Path.Combine(folder, $"{name}.log"), output);
            }
        }

        foreach (var gateway in Gateways)
        {
            await gateway.DisposeAsync();
        }

        foreach (var silo in Silos)
        {
            await silo.DisposeAsync();
        }

        await _redis.DisposeAsync();
    }

    private static string EnsureModel()
    {
        var parent = Path.Combine(Path.GetTempPath(), "kvcache-cluster-test-models");
        var directory = Path.Combine(parent, "decode-8k");
        if (File.Exists(Path.Combine(directory, "model.safetensors")))
        {
            return directory;
        }

        // Written aside and renamed, so parallel test runs never see half a model.
        var staging = Path.Combine(parent, $".decode-8k.{Environment.ProcessId}.{Guid.NewGuid():N}");
        ModelGenerator.Write(staging, DecodeModel, seed: 7);
        try
        {
            Directory.Move(staging, directory);
        }
        catch (IOException) when (File.Exists(Path.Combine(directory, "model.safetensors")))
        {
            Directory.Delete(staging, recursive: true);
        }

        return directory;
    }
}
