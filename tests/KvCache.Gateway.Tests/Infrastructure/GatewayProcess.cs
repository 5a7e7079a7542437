using KvCache.Contracts.V1;
using KvCache.Testing.Net;
using Grpc.Core;
using Grpc.Net.Client;
using KvCache.Testing.Processes;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// The single-node service as a real child process (<c>dotnet KvCache.Gateway.dll</c>): started, stopped with
/// SIGTERM, or killed with SIGKILL, then started again on the same port and store.
/// </summary>
public sealed class GatewayProcess : IAsyncDisposable
{
    // Test classes run in parallel and a child process binds its port only later: never hand a port out twice.
    private static readonly LoopbackPorts s_ports = new(TestPorts.FirstServicePort, TestPorts.LastServicePort);

    private readonly string[] _settings;
    private ServiceProcess? _service;

    /// <param name="settings">Configuration as <c>Section:Key=value</c> command-line arguments.</param>
    public GatewayProcess(int port, params string[] settings)
    {
        Port = port;
        OpenAIPort = FreePort();
        // The random built-in model unless a test says otherwise: the tests' token ids and expectations are its own.
        _settings =
        [
            $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{port}",
            $"--Kestrel:Endpoints:OpenAI:Url=http://127.0.0.1:{OpenAIPort}",
            "--Models:BuiltIn=Random",
            .. settings,
        ];
        Channel = GrpcChannel.ForAddress(new Uri($"http://127.0.0.1:{port}"));
        Client = new KvCacheClient(Channel);
    }

    public int Port { get; }

    /// <summary>Port of the OpenAI-compatible HTTP/1.1 endpoint.</summary>
    public int OpenAIPort { get; }

    public Uri OpenAIAddress => new($"http://127.0.0.1:{OpenAIPort}");

    /// <summary>The folder the gateway runs from: this test's output, or a published image's /app.</summary>
    public string AppDirectory { get; init; } = AppContext.BaseDirectory;

    /// <summary>host:port, the form python's grpc.insecure_channel takes.</summary>
    public string Target => $"127.0.0.1:{Port}";

    public GrpcChannel Channel { get; }

    public KvCacheClient Client { get; }

    /// <summary>What the process printed so far (for failure messages).</summary>
    public string Output => _service?.Output ?? "";

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
        // One ServiceProcess across restarts, so Output keeps what every run printed.
        _service ??= new ServiceProcess("the gateway", Path.Combine(AppDirectory, "KvCache.Gateway.dll"));
        _service.Start(_settings);
        await WaitUntilServingAsync(headers);
    }

    /// <summary>SIGTERM, as Kubernetes stops a pod; waits for a clean exit.</summary>
    public Task StopAsync() => Service.StopAsync();

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

    /// <summary>A free loopback port in this test project's service range (<see cref="TestPorts"/>).</summary>
    public static int FreePort() => s_ports.Take();

    private async Task WaitUntilServingAsync(Metadata? headers)
    {
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (true)
        {
            if (Service.ExitCode is { } exitCode)
            {
                throw new InvalidOperationException($"The gateway exited with {exitCode} during start:\n{Output}");
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

    private ServiceProcess Service => _service ?? throw new InvalidOperationException("The gateway is not started.");
}
