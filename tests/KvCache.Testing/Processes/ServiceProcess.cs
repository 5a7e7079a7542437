using System.Diagnostics;
using System.Text;

namespace KvCache.Testing.Processes;

/// <summary>
/// One of the project's executables as a real child process (<c>dotnet X.dll</c>): started, signalled as
/// Kubernetes would (SIGTERM, SIGSTOP/SIGCONT), killed with SIGKILL, with everything it printed kept for failure
/// messages. The gateway tests and the cluster bench add what is particular to a gateway or a silo.
/// </summary>
public sealed class ServiceProcess(string name, string dllPath)
{
    private readonly StringBuilder _output = new();
    private Process? _process;

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

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>The last <paramref name="lines"/> lines it printed.</summary>
    public string Tail(int lines)
    {
        var all = Output.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    /// <summary>The exit code if the process has exited, else null.</summary>
    public int? ExitCode => _process is { HasExited: true } exited ? exited.ExitCode : null;

    /// <param name="workingDirectory">Where the process starts (default: the folder of its dll).</param>
    public void Start(IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        if (!File.Exists(dllPath))
        {
            throw new InvalidOperationException($"{dllPath} is missing: the test project must reference its project.");
        }

        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory ?? Path.GetDirectoryName(dllPath)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(dllPath);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        _process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {name}.");
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>SIGTERM, as Kubernetes stops a pod; waits for a clean exit.</summary>
    public async Task StopAsync()
    {
        var process = Running();
        await SignalAsync("TERM");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        _process = null;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{name} exited with {process.ExitCode}:\n{Output}");
        }
    }

    /// <summary>SIGKILL: no shutdown code runs.</summary>
    public async Task KillAsync()
    {
        var process = Running();
        process.Kill(entireProcessTree: true);
        await process.WaitForExitAsync();
        _process = null;
    }

    /// <summary>Waits for the process to exit on its own; returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        var process = Running();
        using var cancel = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(cancel.Token);
        _process = null;
        return process.ExitCode;
    }

    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", Running().Id.ToString()]);
        await kill.WaitForExitAsync();
    }

    /// <summary>Kills the process if it still runs.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    private Process Running() => _process ?? throw new InvalidOperationException($"{name} is not started.");

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
