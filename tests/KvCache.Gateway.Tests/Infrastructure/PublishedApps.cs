using System.Diagnostics;
using System.Text.RegularExpressions;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// The gateway and silo as their images ship them: each Dockerfile's own <c>RUN dotnet publish … -o /app</c>,
/// run here with a temporary folder in place of <c>/app</c>. Published once per test run.
/// </summary>
public static partial class PublishedApps
{
    private static readonly Lazy<Task<(string Gateway, string Silo)>> s_published = new(PublishAsync);

    /// <summary>The repository root (the folder holding Cluster.sln).</summary>
    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>The published gateway folder and the published silo folder.</summary>
    public static Task<(string Gateway, string Silo)> GetAsync() => s_published.Value;

    private static async Task<(string Gateway, string Silo)> PublishAsync()
    {
        var output = Path.Combine(Path.GetTempPath(), $"kvcache-published-{Environment.ProcessId}");
        // One after the other: both build the shared projects in the same obj folders.
        var gateway = await PublishAsync("src/Gateway/Dockerfile", Path.Combine(output, "gateway"));
        var silo = await PublishAsync("src/SiloHost/Dockerfile", Path.Combine(output, "silo"));
        return (gateway, silo);
    }

    private static async Task<string> PublishAsync(string dockerfile, string output)
    {
        var lines = File.ReadAllLines(Path.Combine(RepositoryRoot, dockerfile))
            .Select(l => PublishLine().Match(l.Trim()))
            .Where(m => m.Success)
            .ToList();
        if (lines.Count != 1)
        {
            throw new InvalidOperationException($"{dockerfile} must have exactly one `RUN dotnet publish … -o /app`; found {lines.Count}.");
        }

        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = RepositoryRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in lines[0].Groups["args"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            start.ArgumentList.Add(argument);
        }

        start.ArgumentList.Add("-o");
        start.ArgumentList.Add(output);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start dotnet publish.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"dotnet {string.Join(' ', start.ArgumentList)} failed:\n{await stdout}\n{await stderr}");
        }

        return output;
    }

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Cluster.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No Cluster.sln above {AppContext.BaseDirectory}.");
    }

    [GeneratedRegex(@"^RUN dotnet (?<args>publish .*) -o /app$")]
    private static partial Regex PublishLine();
}
