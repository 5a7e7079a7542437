using KvCache.Contracts.Internal.V1;
using KvCache.Silo.Cluster.Serving;
using KvCache.Transport;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// A cluster silo as a real child process (<c>dotnet KvCache.SiloHost.dll</c>): started until it has joined the
/// cluster, stopped with SIGTERM (spills and leaves) or killed with SIGKILL (no shutdown code runs).
/// </summary>
public sealed class SiloProcess : IAsyncDisposable
{
    private readonly string[] _settings;
    private ServiceProcess? _service;

    /// <param name="settings">Configuration as <c>Section:Key=value</c> command-line arguments.</param>
    public SiloProcess(string name, int port, string secret, params string[] settings)
    {
        Name = name;
        Port = port;
        Secret = secret;
        _settings = [$"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{port}", $"--Silo:SiloName={name}", .. settings];
        Channel = GrpcChannel.ForAddress(new Uri($"http://127.0.0.1:{port}"));
        Client = new SiloGrpc.SiloClient(Channel.CreateCallInvoker());
    }

    public string Name { get; }

    public int Port { get; }

    public string Secret { get; }

    /// <summary>The folder the silo runs from: this test's output, or a published image's /app.</summary>
    public string AppDirectory { get; init; } = AppContext.BaseDirectory;

        /// <summary>host:port, the endpoint of its membership row.</summary>
    public string Endpoint => $"127.0.0.1:{Port}";

    public GrpcChannel Channel { get; }

    /// <summary>A client of the internal endpoint; calls need <see cref="SiloProtocol.Headers"/>.</summary>
    public SiloGrpc.SiloClient Client { get; }

    public string Output => _service?.Output ?? "";

    /// <summary>Whether the process is running.</summary>
    public bool IsRunning => _service?.IsRunning ?? false;

    public async Task StartAsync()
    {
        // One ServiceProcess across restarts, so Output keeps what every run printed.
        _service ??= new ServiceProcess($"Silo {Name}", Path.Combine(AppDirectory, "KvCache.SiloHost.dll"));

        // The secret travels through the environment, as it would from a mounted secret.
        _service.Start(_settings, new Dictionary<string, string> { ["Cluster__Secret"] = Secret });

        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (!Output.Contains("joined the cluster", StringComparison.Ordinal))
        {
            if (_service.ExitCode is { } exitCode)
            {
                throw new InvalidOperationException($"Silo {Name} exited with {exitCode} during start:\n{Output}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Silo {Name} did not join the cluster:\n{Output}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>SIGTERM, as Kubernetes stops a pod; waits for a clean exit.</summary>
    public Task StopAsync() => Service.StopAsync();

    /// <summary>SIGSTOP: the process freezes (no heartbeat, no serving) until <see cref="ResumeAsync"/>.</summary>
    public Task PauseAsync() => Service.SignalAsync("STOP");

    /// <summary>SIGCONT: a paused process runs on, unaware of the time it lost.</summary>
    public Task ResumeAsync() => Service.SignalAsync("CONT");

    /// <summary>Waits for the process to exit on its own; returns its exit code.</summary>
    public Task<int> WaitForExitAsync(TimeSpan timeout) => Service.WaitForExitAsync(timeout);

    /// <summary>SIGKILL: no shutdown code runs.</summary>
    public Task KillAsync() => Service.KillAsync();

    public async ValueTask DisposeAsync()
    {
        if (_service is not null)
        {
            await _service.DisposeAsync();
        }

        Channel.Dispose();
    }

    private ServiceProcess Service => _service ?? throw new InvalidOperationException($"Silo {Name} is not started.");
}
