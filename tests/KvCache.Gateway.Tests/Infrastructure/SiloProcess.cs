using System.Net;
using KvCache.Testing.Processes;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// A cluster silo as a real child process (<c>dotnet KvCache.SiloHost.dll</c>), an Orleans silo on loopback with its
/// own silo port, gateway port (for Orleans clients) and HTTP/1.1 health port: started until <c>/healthz/ready</c>
/// answers (Orleans lists it as active), stopped with SIGTERM (drains and leaves), frozen with SIGSTOP, or killed with
/// SIGKILL (no shutdown code runs).
/// </summary>
public sealed class SiloProcess : IAsyncDisposable
{
    private static readonly HttpClient s_http = new() { Timeout = TimeSpan.FromSeconds(5) };

    private readonly string[] _settings;
    private ServiceProcess? _service;

    /// <param name="settings">Configuration as <c>Section:Key=value</c> command-line arguments.</param>
    public SiloProcess(string name, params string[] settings)
    {
        Name = name;
        SiloPort = GatewayProcess.FreePort();
        GatewayPort = GatewayProcess.FreePort();
        HealthPort = GatewayProcess.FreePort();
        _settings =
        [
            $"--Silo:SiloName={name}",
            "--Cluster:AdvertisedAddress=127.0.0.1",
            $"--Cluster:SiloPort={SiloPort}",
            $"--Cluster:GatewayPort={GatewayPort}",
            $"--Kestrel:Endpoints:Health:Url=http://127.0.0.1:{HealthPort}",
            // The random built-in model unless a test says otherwise, as GatewayProcess.
            "--Models:BuiltIn=Random",
            .. settings,
        ];
    }

    public string Name { get; }

    /// <summary>Where the other silos reach it (Orleans' silo-to-silo port).</summary>
    public int SiloPort { get; }

    /// <summary>Where Orleans clients (gateways) reach it.</summary>
    public int GatewayPort { get; }

    /// <summary>Its HTTP/1.1 endpoint: <c>/healthz/live</c>, <c>/healthz/ready</c>, <c>/metrics</c>.</summary>
    public int HealthPort { get; }

    /// <summary>The folder the silo runs from: this test's output, or a published image's /app.</summary>
    public string AppDirectory { get; init; } = AppContext.BaseDirectory;

    /// <summary>host:port of its silo endpoint, one of the ways a placement hint or an admin call names it.</summary>
    public string Endpoint => $"127.0.0.1:{SiloPort}";

    public string Output => _service?.Output ?? "";

    /// <summary>Whether the process is running.</summary>
    public bool IsRunning => _service?.IsRunning ?? false;

    public async Task StartAsync()
    {
        // One ServiceProcess across restarts, so Output keeps what every run printed.
        _service ??= new ServiceProcess($"Silo {Name}", Path.Combine(AppDirectory, "KvCache.SiloHost.dll"));
        _service.Start(_settings);

        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (await ProbeAsync("/healthz/ready") != HttpStatusCode.OK)
        {
            if (_service.ExitCode is { } exitCode)
            {
                throw new InvalidOperationException($"Silo {Name} exited with {exitCode} during start:\n{Output}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Silo {Name} did not become ready:\n{Output}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>GET on the health port; null while nothing answers there.</summary>
    public async Task<HttpStatusCode?> ProbeAsync(string path)
    {
        try
        {
            using var response = await s_http.GetAsync(new Uri($"http://127.0.0.1:{HealthPort}{path}"));
            return response.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return null;
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
    }

    private ServiceProcess Service => _service ?? throw new InvalidOperationException($"Silo {Name} is not started.");
}
