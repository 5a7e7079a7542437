using System.Text.Json;
using KvCache.Testing.Python;

namespace KvCache.Text.Tests;

/// <summary>Paths of the committed fixtures (made by Fixtures/make_fixtures.py) and their python references.</summary>
internal static class Fixtures
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Fixtures");

    public static string Path_(string name) => Path.Combine(Directory, name);

    public static string[] Strings() => JsonSerializer.Deserialize<string[]>(File.ReadAllText(Path_("strings.json")))!;

    /// <summary>Runs a fixture script under Debian's python3 and parses the JSON it prints.</summary>
    public static async Task<JsonElement> RunPythonAsync(string script, params string[] args)
    {
        var run = await PythonGrpc.RunPlainScriptAsync(Path_(script), args, TimeSpan.FromMinutes(3));
        using var document = JsonDocument.Parse(run.StandardOutput);
        return document.RootElement.Clone();
    }
}
