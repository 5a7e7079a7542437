using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// Runs Node/openai_client.mjs: the official <c>openai</c> npm package (installed by <c>npm ci</c> in that folder,
/// as scripts/test.sh does) against a gateway's OpenAI-compatible endpoint; and <c>curl</c> for raw responses.
/// </summary>
internal static class OpenAINode
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromMinutes(3);

    /// <summary>The operation's one-line JSON answer (an APIError as <c>{"error": {"status", "body"}}</c>).</summary>
    public static async Task<JsonNode> RunAsync(Uri baseUrl, string apiKey, string operation, object args)
    {
        var folder = Folder();
        if (!File.Exists(Path.Combine(folder, "node_modules", "openai", "package.json")))
        {
            throw new InvalidOperationException($"The openai npm package is not installed: run 'npm ci' in {folder} (scripts/test.sh does).");
        }

        var (exitCode, stdout, stderr) = await RunProcessAsync(
            "node", folder, [Path.Combine(folder, "openai_client.mjs"), baseUrl.ToString().TrimEnd('/'), apiKey, operation, JsonSerializer.Serialize(args)]);
        if (exitCode != 0)
        {
            throw new InvalidOperationException($"node {operation} exited with {exitCode}:\n{stderr}\n{stdout}");
        }

        return JsonNode.Parse(stdout.TrimEnd().Split('\n')[^1])!;
    }

    /// <summary>curl's output (headers included with <c>-i</c>); <c>-N</c> so a stream is read as it comes.</summary>
    public static async Task<string> CurlAsync(params string[] arguments)
    {
        var (exitCode, stdout, stderr) = await RunProcessAsync("curl", AppContext.BaseDirectory, ["-sS", "-N", "--max-time", "120", .. arguments]);
        return exitCode == 0 ? stdout : throw new InvalidOperationException($"curl exited with {exitCode}: {stderr}");
    }

    /// <summary>The committed Node folder of this test project's sources (where node_modules is installed).</summary>
    private static string Folder() => Path.Combine(PublishedApps.RepositoryRoot, "tests", "KvCache.Gateway.Tests", "Node");

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunProcessAsync(string program, string directory, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start.");
        using var timeout = new CancellationTokenSource(s_timeout);
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} ran longer than {s_timeout}.");
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}
