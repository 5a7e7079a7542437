using KvCache.Gateway.Routing;
using KvCache.Gateway.Routing.Internal;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Serving;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

public static class RoutingServiceCollectionExtensions
{
    /// <summary>
    /// Routes the gateway's <see cref="ISessionService"/> to silo processes: membership and the grain directory
    /// from Redis (<c>Spill:Redis</c>, membership overridable under <c>Cluster:Membership:Redis</c>), placement by
    /// load, the cluster secret from <c>Cluster:Secret</c>.
    /// </summary>
    public static IServiceCollection AddClusterRouting(this IServiceCollection services, IConfiguration configuration)
    {
        var spill = configuration.GetSection(RedisStoreOptions.SectionName);
        if (string.IsNullOrEmpty(spill["Endpoint"]))
        {
            throw new InvalidOperationException($"Routed mode reads the cluster from Redis: set {RedisStoreOptions.SectionName}:Endpoint.");
        }

        services.AddOptions<RoutingOptions>().Bind(configuration.GetSection(RoutingOptions.SectionName)).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<MembershipOptions>().Bind(configuration.GetSection(MembershipOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<MembershipOptions>, MembershipOptionsValidator>();
        services.AddOptions<RedisStoreOptions>().Bind(spill).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<RedisMembershipOptions>()
            .Bind(spill)
            .Bind(configuration.GetSection(RedisMembershipOptions.SectionName))
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<RedisSessionStore>();
        services.AddSingleton<IMembershipTable, RedisMembershipTable>();
        services.AddSingleton(sp => new SiloConnections(sp.GetRequiredService<IOptions<RoutingOptions>>().Value.Secret));
        services.AddSingleton<ClusterView>();
        services.AddHostedService(sp => sp.GetRequiredService<ClusterView>());
        services.TryAddSingleton<IPlacementDirector, ResourceOptimizedPlacementDirector>();
        services.AddSingleton<ISessionService, ClusterSessionService>();
        return services;
    }
}
