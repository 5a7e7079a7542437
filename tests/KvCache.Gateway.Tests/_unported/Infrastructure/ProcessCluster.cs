using KvCache.Contracts.Admin.V1;
using KvCache.GpuWorker;
using KvCache.Silo.Cluster.Membership;
using KvCache.Testing.Redis;
using KvCache.Transport;
using Microsoft.Extensions.Options;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// A cluster of real processes on a real redis-server: silo processes (started, stopped, killed one by one) and
/// a gateway process in Routed mode. Short leases, so a killed silo is declared dead within seconds.
/// </summary>
public sealed class ProcessCluster : IAsyncDisposable
{
    public const string Secret = "test-cluster-secret-0123456789";

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
    private readonly RedisMembershipTable _table;

    private ProcessCluster(RedisServer redis, string modelDirectory, string[] settings)
    {
        _redis = redis;
        _common =
        [
            $"--Spill:Redis:Endpoint={redis.Endpoint}",
            "--Cluster:Membership:IAmAlivePeriod=00:00:00.500",
            "--Cluster:Membership:LeaseDuration=00:00:02",
            $"--Models:Directories:0={modelDirectory}",
            "--Models:CacheBudgetMiB=64",
            .. settings,
        ];
        _table = new RedisMembershipTable(Options.Create(new RedisMembershipOptions { Endpoint = redis.Endpoint }));
    }

    public List<SiloProcess> Silos { get; } = [];

    public GatewayProcess Gateway { get; private set; } = null!;

    public string RedisEndpoint => _redis.Endpoint;

    /// <param name="settings">Extra settings of every process, after the cluster's own (so these win).</param>
    /// <param name="modelDirectory">The model the silos serve (default: the generated decode model).</param>
    /// <param name="gatewayHeaders">Metadata the gateway needs for a ListModels call (an API key when keys are configured).</param>
    public static async Task<ProcessCluster> StartAsync(int silos, string[]? settings = null, string? modelDirectory = null, Metadata? gatewayHeaders = null)
    {
        var redis = await RedisServer.StartAsync(TestPorts.Redis);
        var cluster = new ProcessCluster(redis, modelDirectory ?? EnsureModel(), settings ?? []);
        try
        {
            await Task.WhenAll(Enumerable.Range(0, silos).Select(_ => cluster.AddSiloAsync()));

            await cluster.WaitForActiveAsync(silos);
            cluster.Gateway = new GatewayProcess(
                GatewayProcess.FreePort(),
                [.. cluster._common, "--Cluster:Mode=Routed", "--Cluster:RefreshPeriod=00:00:00.250", $"--Cluster:Secret={Secret}"]);
            await cluster.Gateway.StartAsync(gatewayHeaders);

            // The gateway lists the silos' models once it has read their load: then it can place on all of them.
            while ((await cluster.Gateway.Client.ListModelsAsync(new(), new CallOptions(gatewayHeaders))).Models.Count == 0)
            {
                await Task.Delay(100);
            }

            await Task.Delay(TimeSpan.FromSeconds(1));
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    public SiloProcess Silo(string name) => Silos.Single(s => s.Name == name);

    /// <summary>Starts one more silo (named silo-N in start order) and waits until it has joined.</summary>
    public async Task<SiloProcess> AddSiloAsync()
    {
        SiloProcess silo;
        lock (Silos)
        {
            silo = new SiloProcess($"silo-{Silos.Count}", GatewayProcess.FreePort(), Secret, _common);
            Silos.Add(silo);
        }

        await silo.StartAsync();
        return silo;
    }

    /// <summary>A client of the gateway's operator API (dev mode: every caller holds the admin role).</summary>
    public AdminClient Admin => new(Gateway.Channel.CreateCallInvoker());

    /// <summary>The membership table's status of each silo endpoint.</summary>
    public async Task<IReadOnlyDictionary<string, SiloStatus>> MembersAsync() =>
        (await _table.ReadAllAsync()).Members.ToDictionary(m => m.Entry.SiloAddress.Endpoint, m => m.Entry.Status);

    public async ValueTask DisposeAsync()
    {
        if (Gateway is not null)
        {
            await Gateway.DisposeAsync();
        }

        foreach (var silo in Silos)
        {
            await silo.DisposeAsync();
        }

        await _table.DisposeAsync();
        await _redis.DisposeAsync();
    }

    private async Task WaitForActiveAsync(int count)
    {
        while ((await MembersAsync()).Values.Count(s => s == SiloStatus.Active) < count)
        {
            await Task.Delay(100);
        }
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
