using Grpc.Core;
using Grpc.Net.Client;
using KvCache.Contracts.V1;
using KvCache.Testing.Net;
using KvCache.Testing.Processes;
using KvCacheClient = KvCache.Contracts.V1.KvCache.KvCacheClient;

namespace KvCache.Bench.Cluster;

/// <summary>
/// One of the service's programs as a child process (the tests' <see cref="ServiceProcess"/>), with a gRPC client
/// when it is a gateway; killed with SIGKILL when disposed.
/// </summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    private static readonly LoopbackPorts s_ports = new(48000, 48999);

    private readonly ServiceProcess _process;
    private GrpcChannel? _channel;

    private ChildProcess(string name, ServiceProcess process)
    {
        Name = name;
        _process = process;
    }

    public string Name { get; }

    /// <summary>The gateway's gRPC channel (gateways only).</summary>
    public GrpcChannel Channel => _channel ?? throw new InvalidOperationException($"{Name} serves no gRPC.");

    public KvCacheClient Client { get; private set; } = null!;

    /// <summary>
    /// The build output of <c>src/{project}</c> in this bench's configuration (Release or Debug): the bench project
    /// references it without its assembly, so building the bench builds it.
    /// </summary>
    public static string ProgramPath(string project, string dll)
    {
        var baseDirectory = new DirectoryInfo(AppContext.BaseDirectory);
        var framework = baseDirectory.Name;
        var configuration = baseDirectory.Parent?.Name ?? "Release";
        for (var dir = baseDirectory; dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln")))
            {
                return Path.Combine(dir.FullName, "src", project, "bin", configuration, framework, dll);
            }
        }

        return Path.Combine(Directory.GetCurrentDirectory(), "src", project, "bin", configuration, framework, dll);
    }

    public static int FreePort() => s_ports.Take();

    public static ChildProcess Start(string dll, string name, IEnumerable<string> arguments)
    {
        var process = new ServiceProcess(name, dll);
        process.Start(arguments);
        return new ChildProcess(name, process);
    }

    /// <summary>Starts a gateway on a free port and waits until it lists a model (so it can place sessions).</summary>
    public static async Task<ChildProcess> StartGatewayAsync(string dll, string name, IEnumerable<string> settings)
    {
        var port = FreePort();
        // The OpenAI endpoint too gets a free port: the default one would collide between gateways.
        var child = Start(dll, name, [$"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{port}", $"--Kestrel:Endpoints:OpenAI:Url=http://127.0.0.1:{FreePort()}", .. settings]);
        child._channel = GrpcChannel.ForAddress(new Uri($"http://127.0.0.1:{port}"));
        child.Client = new KvCacheClient(child._channel);
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (true)
        {
            child.ThrowIfExited();
            try
            {
                var models = await child.Client.ListModelsAsync(new ListModelsRequest(), new CallOptions(deadline: DateTime.UtcNow.AddSeconds(5)));
                if (models.Models.Count > 0)
                {
                    return child;
                }
            }
            catch (RpcException) when (DateTime.UtcNow < deadline)
            {
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{name} lists no model after 3 minutes:\n{child.Tail(40)}");
            }

            await Task.Delay(100);
        }
    }

    public void ThrowIfExited()
    {
        if (_process.ExitCode is { } exitCode)
        {
            throw new InvalidOperationException($"{Name} exited with {exitCode}:\n{Tail(40)}");
        }
    }

    /// <summary>SIGKILL: no shutdown code runs.</summary>
    public Task KillAsync() => _process.KillAsync();

    public string Tail(int lines) => _process.Tail(lines);

    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync();
        _channel?.Dispose();
    }
}

/// <summary>A silo process (src/SiloHost) on free ports, ready once its <c>/healthz/ready</c> answers 200.</summary>
internal sealed class SiloChild
{
    private static readonly HttpClient s_http = new() { Timeout = TimeSpan.FromSeconds(5) };

    private SiloChild(string name, ChildProcess process)
    {
        Name = name;
        Process = process;
    }

    /// <summary>Silo:SiloName, as sessions report their owner and the placement hint names it.</summary>
    public string Name { get; }

    public ChildProcess Process { get; }

    public static async Task<SiloChild> StartAsync(string dll, string name, IEnumerable<string> settings)
    {
        int siloPort = ChildProcess.FreePort(), gatewayPort = ChildProcess.FreePort(), healthPort = ChildProcess.FreePort();
        var health = new Uri($"http://127.0.0.1:{healthPort}/healthz/ready");
        var process = ChildProcess.Start(dll, name,
        [
            .. settings,
            $"--Silo:SiloName={name}",
            $"--Cluster:SiloPort={siloPort}",
            $"--Cluster:GatewayPort={gatewayPort}",
            $"--Kestrel:Endpoints:Health:Url=http://127.0.0.1:{healthPort}",
        ]);
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (true)
        {
            process.ThrowIfExited();
            try
            {
                using var response = await s_http.GetAsync(health);
                if (response.IsSuccessStatusCode)
                {
                    return new SiloChild(name, process);
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }

            if (DateTime.UtcNow > deadline)
            {
                await process.DisposeAsync();
                throw new TimeoutException($"{name} not ready after 3 minutes:\n{process.Tail(40)}");
            }

            await Task.Delay(100);
        }
    }
}
