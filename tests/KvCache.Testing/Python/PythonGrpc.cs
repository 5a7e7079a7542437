using System.Diagnostics;
using System.Text;
using Xunit;

namespace KvCache.Testing.Python;

/// <summary>
/// Drives a real third-party gRPC client (Debian's python3-grpcio under /usr/bin/python3) from tests.
/// </summary>
/// <remarks>
/// Usage:
/// <code>
/// using var stubs = await PythonGrpc.GenerateStubsAsync(protoRoot, "kvcache/v1/kvcache.proto");
/// var run = await PythonGrpc.RunScriptAsync(stubs, "Python/my_client.py", ["127.0.0.1:41234", "unary"], TimeSpan.FromSeconds(60));
/// Assert.Contains("expected line", run.StandardOutput);
/// </code>
/// Stubs land under <see cref="PythonStubs.Directory"/> mirroring the proto paths, so a script imports
/// <c>from kvcache.v1 import kvcache_pb2, kvcache_pb2_grpc</c>. A missing interpreter or grpc module, a non-zero
/// exit and a timeout all fail the test with the process output; they never skip it.
/// </remarks>
public static class PythonGrpc
{
    /// <summary>Debian's interpreter: the python3 first on PATH may lack the Debian python3-* modules.</summary>
    public const string Interpreter = "/usr/bin/python3";

    private static readonly TimeSpan s_toolTimeout = TimeSpan.FromSeconds(120);

    /// <summary>Fails the test unless grpc and grpc_tools import under <see cref="Interpreter"/>.</summary>
    public static async Task EnsureAvailableAsync()
    {
        if (!File.Exists(Interpreter))
        {
            Assert.Fail($"{Interpreter} is missing; install python3, python3-grpcio and python3-grpc-tools (apt-get install python3-grpcio python3-grpc-tools).");
        }

        var check = await RunProcessAsync(["-c", "import grpc, grpc_tools.protoc; print(grpc.__version__)"], pythonPath: null, s_toolTimeout);
        if (check.ExitCode != 0)
        {
            Assert.Fail($"{Interpreter} cannot import grpc / grpc_tools; install python3-grpcio and python3-grpc-tools.\n{check}");
        }
    }

    /// <summary>Generates *_pb2.py and *_pb2_grpc.py for <paramref name="protoFiles"/> (relative to <paramref name="protoRoot"/>) into a fresh temp directory.</summary>
    public static async Task<PythonStubs> GenerateStubsAsync(string protoRoot, params string[] protoFiles)
    {
        ArgumentException.ThrowIfNullOrEmpty(protoRoot);
        if (protoFiles.Length == 0)
        {
            throw new ArgumentException("At least one .proto file is needed.", nameof(protoFiles));
        }

        await EnsureAvailableAsync();
        var stubs = new PythonStubs(Directory.CreateTempSubdirectory("kvcache-pystubs-").FullName);
        try
        {
            string[] args =
            [
                "-m", "grpc_tools.protoc",
                $"-I{Path.GetFullPath(protoRoot)}",
                $"--python_out={stubs.Directory}",
                $"--grpc_python_out={stubs.Directory}",
                .. protoFiles,
            ];
            var result = await RunProcessAsync(args, pythonPath: null, s_toolTimeout);
            if (result.ExitCode != 0)
            {
                Assert.Fail($"grpc_tools.protoc failed for {string.Join(", ", protoFiles)}.\n{result}");
            }

            return stubs;
        }
        catch
        {
            stubs.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs a script with the stubs importable, failing the test with its output if it exits non-zero or
    /// outlives <paramref name="timeout"/> (then its process tree is killed).
    /// </summary>
    public static async Task<PythonResult> RunScriptAsync(PythonStubs stubs, string scriptPath, IReadOnlyList<string> args, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(stubs);
        if (!File.Exists(scriptPath))
        {
            throw new FileNotFoundException("Python script not found.", scriptPath);
        }

        var result = await RunProcessAsync([Path.GetFullPath(scriptPath), .. args], stubs.Directory, timeout);
        if (result.ExitCode != 0)
        {
            Assert.Fail($"{Path.GetFileName(scriptPath)} {string.Join(' ', args)} failed.\n{result}");
        }

        return result;
    }

    /// <summary>
    /// Runs a script that needs no gRPC stubs (a reference implementation: python3-sentencepiece, python3-jinja2),
    /// failing the test with its output if it exits non-zero or outlives <paramref name="timeout"/>.
    /// </summary>
    public static async Task<PythonResult> RunPlainScriptAsync(string scriptPath, IReadOnlyList<string> args, TimeSpan timeout)
    {
        if (!File.Exists(Interpreter))
        {
            Assert.Fail($"{Interpreter} is missing; bash scripts/test.sh installs the Debian python3 packages the tests need.");
        }

        var result = await RunProcessAsync([Path.GetFullPath(scriptPath), .. args], pythonPath: null, timeout);
        if (result.ExitCode != 0)
        {
            Assert.Fail($"{Path.GetFileName(scriptPath)} {string.Join(' ', args)} failed (bash scripts/test.sh installs its Debian packages).\n{result}");
        }

        return result;
    }

    private static async Task<PythonResult> RunProcessAsync(IReadOnlyList<string> args, string? pythonPath, TimeSpan timeout)
    {
        var startInfo = new ProcessStartInfo(Interpreter)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var arg in args)
        {
            startInfo.ArgumentList.Add(arg);
        }

        var environment = startInfo.Environment;
        environment["PYTHONIOENCODING"] = "utf-8";
        environment["PYTHONUNBUFFERED"] = "1";
        environment["PYTHONDONTWRITEBYTECODE"] = "1";
        if (pythonPath is not null)
        {
            environment["PYTHONPATH"] = pythonPath;
        }

        // grpcio honours proxy variables, and a proxy cannot reach the test's loopback server.
        foreach (var name in new[] { "http_proxy", "https_proxy", "all_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY" })
        {
            environment.Remove(name);
        }

        using var process = Process.Start(startInfo) ?? throw new InvalidOperationException($"Could not start {Interpreter}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeoutCts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(timeoutCts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Assert.Fail($"{Interpreter} {string.Join(' ', args)} did not finish within {timeout}.\n{new PythonResult(-1, await stdout, await stderr)}");
        }

        return new PythonResult(process.ExitCode, await stdout, await stderr);
    }
}

/// <summary>A temp directory of generated python modules; deleted on dispose.</summary>
public sealed class PythonStubs(string directory) : IDisposable
{
    public string Directory { get; } = directory;

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a leftover temp directory must not fail the test.
        }
    }
}

public sealed record PythonResult(int ExitCode, string StandardOutput, string StandardError)
{
    public override string ToString() =>
        $"exit code {ExitCode}\n--- stdout ---\n{StandardOutput}\n--- stderr ---\n{StandardError}";
}
