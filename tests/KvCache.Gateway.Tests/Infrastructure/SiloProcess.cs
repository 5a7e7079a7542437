using System.Diagnostics;
using System.Text;
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
    private readonly StringBuilder _output = new();
    private Process? _process;

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

    private string SiloDll => Path.Combine(AppDirectory, "KvCache.SiloHost.dll");

    /// <summary>host:port, the endpoint of its membership row.</summary>
    public string Endpoint => $"127.0.0.1:{Port}";

    public GrpcChannel Channel { get; }

    /// <summary>A client of the internal endpoint; calls need <see cref="SiloProtocol.Headers"/>.</summary>
    public SiloGrpc.SiloClient Client { get; }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public async Task StartAsync()
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = AppDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(SiloDll);
        foreach (var setting in _settings)
        {
            start.ArgumentList.Add(setting);
        }

        start.Environment["DOTNET_ENVIRONMENT"] = "Production";

        // The secret travels through the environment, as it would from a mounted secret.
        start.Environment["Cluster__Secret"] = Secret;
        _process = Process.Start(start) ?? throw new InvalidOperationException("Could not start the silo process.");
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (!Output.Contains("joined the cluster", StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"Silo {Name} exited with {_process.ExitCode} during start:\n{Output}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Silo {Name} did not join the cluster:\n{Output}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>SIGTERM, as Kubernetes stops a pod; waits for a clean exit.</summary>
    public async Task StopAsync()
    {
        var process = _process ?? throw new InvalidOperationException("Not started.");
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString()]))
        {
            await kill.WaitForExitAsync();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"Silo {Name} exited with {process.ExitCode}:\n{Output}");
        }

        _process = null;
    }

    /// <summary>SIGSTOP: the process freezes (no heartbeat, no serving) until <see cref="ResumeAsync"/>.</summary>
    public Task PauseAsync() => SignalAsync("STOP");

    /// <summary>SIGCONT: a paused process runs on, unaware of the time it lost.</summary>
    public Task ResumeAsync() => SignalAsync("CONT");

    /// <summary>Waits for the process to exit on its own; returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        var process = _process ?? throw new InvalidOperationException("Not started.");
        using var cancel = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(cancel.Token);
        _process = null;
        return process.ExitCode;
    }

    /// <summary>Whether the process is running.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>SIGKILL: no shutdown code runs.</summary>
    public async Task KillAsync()
    {
        var process = _process ?? throw new InvalidOperationException("Not started.");
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
        _process = null;
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }

        Channel.Dispose();
    }

    private async Task SignalAsync(string signal)
    {
        var process = _process ?? throw new InvalidOperationException("Not started.");
        using var kill = Process.Start("kill", [$"-{signal}", process.Id.ToString()]);
        await kill.WaitForExitAsync();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
