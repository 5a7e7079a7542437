using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvCache.Bench.Internal;

/// <summary>
/// A bench run's measured cells as JSON, with what the run was on, for the plots (<c>plot</c>) and for comparing runs.
/// </summary>
internal static class BenchResults
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Writes <paramref name="results"/> under <paramref name="bench"/>'s name, replacing the file.</summary>
    public static void Write<T>(string path, string bench, IReadOnlyList<T> results)
    {
        var run = new BenchRun<T>(
            bench,
            DateTimeOffset.UtcNow,
            Environment.ProcessorCount,
            File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : null,
            results);
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } directory)
        {
            Directory.CreateDirectory(directory);
        }

        File.WriteAllText(path, JsonSerializer.Serialize(run, Json));
    }

    /// <summary>Reads a file written by <see cref="Write{T}"/>.</summary>
    public static BenchRun<T> Read<T>(string path) =>
        JsonSerializer.Deserialize<BenchRun<T>>(File.ReadAllText(path), Json) ?? throw new InvalidDataException($"{path} holds no bench run.");
}

/// <summary>One run of one bench: when, on how many cores, under what load (1-minute load average), and its cells.</summary>
internal sealed record BenchRun<T>(string Bench, DateTimeOffset Time, int Cores, string? LoadAverage, IReadOnlyList<T> Results);
