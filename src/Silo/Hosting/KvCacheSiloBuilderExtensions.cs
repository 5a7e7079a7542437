using System.Net;
using System.Net.Sockets;
using KvCache.Silo.Hosting;
using KvCache.Silo.Hosting.Internal;
using KvCache.Silo.Migration;
using KvCache.Silo.Models;
using KvCache.Silo.Observability;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions;
using KvCache.Silo.Sessions.Internal;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Orleans.Runtime.Placement;
using KvClusterOptions = KvCache.Silo.Hosting.ClusterOptions;
using OrleansClusterOptions = Orleans.Configuration.ClusterOptions;

namespace Orleans.Hosting;

public static class KvCacheSiloBuilderExtensions
{
    /// <summary>
    /// Adds the KV-cache service to an Orleans silo: its models, session grains, placement by free cache memory,
    /// drain and rebalancing, and the spill store — Redis when <c>Spill:Redis:Endpoint</c> is set, otherwise in memory
    /// (a store or load table registered before this call is kept, as in-process test clusters share one).
    /// Clustering is <see cref="UseKvCacheClustering"/>'s.
    /// </summary>
    public static ISiloBuilder AddKvCacheSilo(this ISiloBuilder silo, IConfiguration configuration)
    {
        var services = silo.Services;
        services.AddKvCacheSessionService(configuration);
        services.AddOptions<ModelCatalogOptions>().Bind(configuration.GetSection(ModelCatalogOptions.SectionName)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton<ResidentSessions>();
        services.TryAddSingleton<SiloMetrics>();
        services.AddSingleton<IMetricsSource, SiloMetricsSource>();
        services.AddSingleton<IReadinessCheck, SiloReadinessCheck>();
        AddParticipant<SiloLoads>(services);
        AddParticipant<SessionDrain>(services);
        AddParticipant<SessionRebalancer>(services);
        services.AddPlacementDirector<CacheAwarePlacement, CacheAwarePlacementDirector>();
        services.AddPlacementDirector<SiloPinnedPlacement, SiloPinnedPlacementDirector>();

        var siloOptions = configuration.GetSection(KvCache.Silo.Hosting.SiloOptions.SectionName).Get<KvCache.Silo.Hosting.SiloOptions>() ?? new();
        silo.Configure<Orleans.Configuration.SiloOptions>(o => o.SiloName = siloOptions.SiloName ?? o.SiloName ?? Environment.MachineName);
        silo.Configure<GrainCollectionOptions>(o => o.ClassSpecificCollectionAge[typeof(SessionGrain).FullName!] = siloOptions.IdleTimeout);

        if (RedisConfigured(configuration))
        {
            services.AddRedisSessionStore(configuration);
            services.TryAddSingleton<ISiloLoadTable>(sp => new RedisSiloLoadTable(
                sp.GetRequiredService<RedisConnection>().Multiplexer,
                sp.GetRequiredService<IOptions<RedisStoreOptions>>().Value.KeyPrefix));
        }
        else
        {
            services.TryAddSingleton<ISessionStore, InMemorySessionStore>();
            services.TryAddSingleton<ISiloLoadTable, InMemorySiloLoadTable>();
        }

        return silo;
    }

    /// <summary>
    /// Forms the cluster: with <c>Spill:Redis:Endpoint</c>, Orleans' Redis membership and Redis grain directory on
    /// that server, this silo reachable at <c>Cluster:AdvertisedAddress</c>, <c>Cluster:SiloPort</c> and
    /// <c>Cluster:GatewayPort</c>; without, a single silo on loopback. Membership, messaging and TLS as configured under
    /// <c>Cluster</c>.
    /// </summary>
    public static ISiloBuilder UseKvCacheClustering(this ISiloBuilder silo, IConfiguration configuration)
    {
        var options = configuration.GetSection(KvClusterOptions.SectionName).Get<KvClusterOptions>() ?? new();
        silo.Configure<OrleansClusterOptions>(o => (o.ClusterId, o.ServiceId) = (options.ClusterId, options.ServiceId));
        silo.Configure<ClusterMembershipOptions>(o =>
        {
            ClusterDefaults.ApplyMembership(o);
            configuration.GetSection(ClusterDefaults.MembershipSection).Bind(o);
        });
        silo.Configure<SiloMessagingOptions>(o =>
        {
            ClusterDefaults.ApplyMessaging(o);
            configuration.GetSection(ClusterDefaults.MessagingSection).Bind(o);
        });

        if (RedisConfigured(configuration))
        {
            var redis = RedisStoreOptionsFrom(configuration);
            silo.UseRedisClustering(o => o.ConfigurationOptions = redis.ToConfigurationOptions());
            silo.UseRedisGrainDirectoryAsDefault(o => o.ConfigurationOptions = redis.ToConfigurationOptions());
            var address = options.AdvertisedAddress is { Length: > 0 } advertised ? IPAddress.Parse(advertised) : null;
            silo.ConfigureEndpoints(address ?? FirstNonLoopbackAddress(), options.SiloPort, options.GatewayPort, listenOnAnyHostAddress: true);
        }
        else
        {
            // One process, one silo: unless configured, a free loopback port for the silo and no gateway listener (its
            // client is in process), so several such processes can share a host.
            var siloPort = configuration[$"{KvClusterOptions.SectionName}:SiloPort"] is null || options.SiloPort == 0 ? FreeLoopbackPort() : options.SiloPort;
            var gatewayPort = configuration[$"{KvClusterOptions.SectionName}:GatewayPort"] is null ? 0 : options.GatewayPort;
            silo.UseLocalhostClustering(siloPort, gatewayPort);
        }

        if (ClusterDefaults.Certificate(options.Tls) is { } certificate)
        {
            silo.UseTls(certificate, tls => ClusterDefaults.RequireSameCertificate(tls, certificate));
        }

        return silo;
    }

    private static void AddParticipant<T>(IServiceCollection services)
        where T : class, ILifecycleParticipant<ISiloLifecycle>
    {
        services.AddSingleton<T>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<T>());
    }

    private static bool RedisConfigured(IConfiguration configuration) =>
        !string.IsNullOrEmpty(configuration[$"{RedisStoreOptions.SectionName}:Endpoint"]);

    private static RedisStoreOptions RedisStoreOptionsFrom(IConfiguration configuration) =>
        configuration.GetSection(RedisStoreOptions.SectionName).Get<RedisStoreOptions>() ?? new();

    private static IPAddress FirstNonLoopbackAddress() =>
        Dns.GetHostAddresses(Dns.GetHostName()).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
        ?? IPAddress.Loopback;

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
