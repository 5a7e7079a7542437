using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using KvCache.Contracts.V1;
using KvCache.Transport;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// The single-node service as a real child process (<c>dotnet KvCache.Gateway.dll</c>): started, stopped with
/// SIGTERM, or killed with SIGKILL, then started again on the same port and store.
/// </summary>
public sealed class GatewayProcess : IAsyncDisposable
{
    // Test classes run in parallel and a child process binds its port only later: never hand a port out twice.
    private static readonly HashSet<int> s_handedOut = [];

    private readonly string[] _settings;
    private readonly StringBuilder _output = new();
    private Process? _process;

    /// <param name="settings">Configuration as <c>Section:Key=value</c> command-line arguments.</param>
    public GatewayProcess(int port, params string[] settings)
    {
        Port = port;
        _settings = [$"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{port}", .. settings];
        Channel = GrpcChannel.ForAddress(new Uri($"http://127.0.0.1:{port}"));
        Client = new KvCacheGrpc.KvCacheClient(Channel.CreateCallInvoker());
    }

    public int Port { get; }

    /// <summary>The folder the gateway runs from: this test's output, or a published image's /app.</summary>
    public string AppDirectory { get; init; } = AppContext.BaseDirectory;

    private string GatewayDll => Path.Combine(AppDirectory, "KvCache.Gateway.dll");

    public string Target => $"127.0.0.1:{Port}";

    public GrpcChannel Channel { get; }

    public KvCacheGrpc.KvCacheClient Client { get; }

    /// <summary>What the process printed so far (for failure messages).</summary>
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

    /// <summary>
    /// Whether the process printed <paramref name="text"/>, waiting up to 30 s: its logger writes from a
    /// background queue, so a line can arrive after the call that caused it has returned.
    /// </summary>
    public async Task<bool> PrintedAsync(string text)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(50);
        }

        return true;
    }

    public async Task StartAsync(Metadata? headers = null)
    {
        if (!File.Exists(GatewayDll))
        {
            throw new InvalidOperationException($"{GatewayDll} is missing: the test project must reference src/Gateway.");
        }

        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = AppDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(GatewayDll);
        foreach (var setting in _settings)
        {
            start.ArgumentList.Add(setting);
        }

        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        _process = Process.Start(start) ?? throw new InvalidOperationException("Could not start the gateway process.");
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        await WaitUntilServingAsync(headers);
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
            throw new InvalidOperationException($"The gateway exited with {process.ExitCode}:\n{Output}");
        }

        _process = null;
    }

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

    /// <summary>A free loopback port in this test project's range (43000-43499; Redis takes 43500-43999).</summary>
    public static int FreePort()
    {
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var port = Random.Shared.Next(43000, 43500);
            lock (s_handedOut)
            {
                if (!s_handedOut.Add(port))
                {
                    continue;
                }
            }

            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
            }
        }

        throw new InvalidOperationException("No free port in 43000-43499.");
    }

    private async Task WaitUntilServingAsync(Metadata? headers)
    {
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (true)
        {
            if (_process is { HasExited: true } exited)
            {
                throw new InvalidOperationException($"The gateway exited with {exited.ExitCode} during start:\n{Output}");
            }

            try
            {
                await Client.ListModelsAsync(new ListModelsRequest(), new CallOptions(headers, DateTime.UtcNow.AddSeconds(5)));
                return;
            }
            catch (RpcException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
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
