using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Membership.Internal;
using KvCache.Silo.Cluster.Migration.Internal;
using KvCache.Silo.Cluster.Serving;
using KvCache.Silo.Cluster.Serving.Internal;
using KvCache.Silo.Hosting;
using KvCache.Silo.Models;
using KvCache.Silo.Observability;
using KvCache.Silo.Runtime;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using Microsoft.AspNetCore.Routing;
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
        services.TryAddSingleton<ISiloStatusOracle, LocalSiloStatusOracle>();
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton<SessionCatalog>();
        services.TryAddSingleton<SiloMetrics>();
        services.AddSingleton<IMetricsSource, SiloMetricsSource>();
        services.AddSingleton<IReadinessCheck, SiloReadinessCheck>();
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

    /// <summary>
    /// Adds a cluster silo: <see cref="AddSilo"/> on the Redis spill store (required), membership in Redis with
    /// this silo's advertised endpoint, directory ownership checked against membership, and the internal
    /// endpoint's service (map it with <see cref="MapSiloGrpc"/>).
    /// </summary>
    public static IServiceCollection AddClusterSilo(this IServiceCollection services, IConfiguration configuration)
    {
        var spill = configuration.GetSection(RedisStoreOptions.SectionName);
        if (string.IsNullOrEmpty(spill["Endpoint"]))
        {
            throw new InvalidOperationException($"A cluster silo needs a shared spill store: set {RedisStoreOptions.SectionName}:Endpoint.");
        }

        services.AddOptions<ClusterOptions>()
            .Bind(configuration.GetSection(ClusterOptions.SectionName))
            .PostConfigure(o =>
            {
                if (string.IsNullOrEmpty(o.AdvertisedEndpoint) && Uri.TryCreate(configuration["Kestrel:Endpoints:Grpc:Url"], UriKind.Absolute, out var url))
                {
                    o.AdvertisedEndpoint = url.Authority;
                }
            })
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddOptions<MembershipOptions>().Bind(configuration.GetSection(MembershipOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<MembershipOptions>, MembershipOptionsValidator>();

        // Membership lives in the spill store's Redis unless Cluster:Membership:Redis says otherwise.
        services.AddOptions<RedisMembershipOptions>()
            .Bind(spill)
            .Bind(configuration.GetSection(RedisMembershipOptions.SectionName))
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<IMembershipTable, RedisMembershipTable>();
        services.AddSingleton(sp =>
        {
            var time = sp.GetRequiredService<TimeProvider>();
            var silo = sp.GetRequiredService<IOptions<SiloOptions>>().Value;
            return ActivatorUtilities.CreateInstance<MembershipAgent>(
                sp,
                new SiloAddress(sp.GetRequiredService<IOptions<ClusterOptions>>().Value.AdvertisedEndpoint, SiloAddress.NewGeneration(time)),
                silo.SiloName ?? Environment.MachineName);
        });
        services.AddSingleton<ISiloStatusOracle, MembershipSiloStatusOracle>();
        services.AddSilo(configuration);
        services.AddSingleton(sp => new SiloConnections(sp.GetRequiredService<IOptions<ClusterOptions>>().Value.Secret));
        services.AddSingleton<SessionMigrator>();
        services.AddSingleton<ClusterSiloLifecycle>();
        services.AddHostedService(sp => sp.GetRequiredService<ClusterSiloLifecycle>());
        services.AddSingleton<SiloGrpcService>();
        return services;
    }

    /// <summary>Maps the cluster silo's internal endpoint (kvcache.internal.v1.Silo).</summary>
    public static IEndpointRouteBuilder MapSiloGrpc(this IEndpointRouteBuilder endpoints)
    {
        endpoints.ServiceProvider.GetRequiredService<SiloGrpcService>().Map(endpoints);
        return endpoints;
    }
}
