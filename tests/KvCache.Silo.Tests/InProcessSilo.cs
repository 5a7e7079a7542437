using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Internal;

namespace KvCache.Silo.Tests;

/// <summary>One silo's services in process: the in-memory store and the generated demo model, unless settings say otherwise.</summary>
internal static class InProcessSilo
{
    /// <param name="settings">Configuration over the defaults (64 MiB of cache memory, the shared demo model folder).</param>
    /// <param name="configure">Registrations made before the silo's own, which then take precedence (fakes).</param>
    public static ServiceProvider Build(TimeProvider time, IEnumerable<KeyValuePair<string, string?>> settings, Action<IServiceCollection>? configure = null)
    {
        var values = new Dictionary<string, string?>
        {
            ["Models:CacheBudgetMiB"] = "64",
            ["Models:DemoModelDirectory"] = Path.Combine(Path.GetTempPath(), "kvcache-test-models"),
        };
        foreach (var (key, value) in settings)
        {
            values[key] = value;
        }

        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<IHostApplicationLifetime, ApplicationLifetime>();
        services.AddSingleton(time);
        configure?.Invoke(services);
        services.AddSilo(new ConfigurationBuilder().AddInMemoryCollection(values).Build());
        return services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true });
    }
}
