using KvCache.Silo.Hosting;
using KvCache.Silo.Observability;
using KvCache.Silo.Sessions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

public static class KvCacheSessionServiceCollectionExtensions
{
    /// <summary>
    /// Adds <see cref="ISessionService"/>, what a gateway calls the session grains through (its own silo's, or the
    /// cluster's through an Orleans client), with its request limits (<c>Silo</c>) and failover timeout (<c>Cluster</c>).
    /// </summary>
    public static IServiceCollection AddKvCacheSessionService(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<SiloOptions>().Bind(configuration.GetSection(SiloOptions.SectionName)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<ClusterOptions>().Bind(configuration.GetSection(ClusterOptions.SectionName)).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<SessionServiceMetrics>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IMetricsSource, SessionServiceMetrics>(sp => sp.GetRequiredService<SessionServiceMetrics>()));
        services.TryAddSingleton<ISessionService, SessionService>();
        return services;
    }
}
