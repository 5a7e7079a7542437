using KvCache.Silo.Hosting;
using KvCache.Silo.Models;
using KvCache.Silo.Runtime;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

public static class SiloServiceCollectionExtensions
{
    /// <summary>
    /// Adds a silo serving sessions in process: models, the activation catalog and the spill store
    /// (Redis when <c>Spill:Redis:Endpoint</c> is set, otherwise in memory).
    /// </summary>
    public static IServiceCollection AddSilo(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<SiloOptions>().Bind(configuration.GetSection(SiloOptions.SectionName)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<ModelCatalogOptions>().Bind(configuration.GetSection(ModelCatalogOptions.SectionName)).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton<SessionCatalog>();
        services.AddSingleton<ISessionService, SessionService>();
        services.AddHostedService<SiloLifecycleService>();

        var redis = configuration.GetSection(RedisStoreOptions.SectionName);
        if (!string.IsNullOrEmpty(redis["Endpoint"]))
        {
            services.AddOptions<RedisStoreOptions>().Bind(redis).ValidateDataAnnotations().ValidateOnStart();
            services.AddSingleton<RedisSessionStore>();
            services.AddSingleton<ISessionStore>(sp => sp.GetRequiredService<RedisSessionStore>());
        }
        else
        {
            services.AddSingleton<ISessionStore, InMemorySessionStore>();
        }

        return services;
    }
}
