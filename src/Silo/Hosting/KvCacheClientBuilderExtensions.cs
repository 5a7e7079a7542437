using KvCache.Silo.Hosting.Internal;
using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using KvClusterOptions = KvCache.Silo.Hosting.ClusterOptions;
using OrleansClusterOptions = Orleans.Configuration.ClusterOptions;

namespace Orleans.Hosting;

public static class KvCacheClientBuilderExtensions
{
    /// <summary>
    /// Connects a gateway (an Orleans client) to the silos that share <c>Spill:Redis</c>: Orleans' Redis gateway list,
    /// the cluster's ids, messaging and TLS as configured under <c>Cluster</c>.
    /// </summary>
    public static IClientBuilder UseKvCacheCluster(this IClientBuilder client, IConfiguration configuration)
    {
        var redis = configuration.GetSection(RedisStoreOptions.SectionName).Get<RedisStoreOptions>() ?? new();
        if (string.IsNullOrEmpty(redis.Endpoint))
        {
            throw new InvalidOperationException($"A gateway finds the silos through Redis: set {RedisStoreOptions.SectionName}:Endpoint.");
        }

        var options = configuration.GetSection(KvClusterOptions.SectionName).Get<KvClusterOptions>() ?? new();
        client.Configure<OrleansClusterOptions>(o => (o.ClusterId, o.ServiceId) = (options.ClusterId, options.ServiceId));
        client.Configure<ClientMessagingOptions>(o =>
        {
            ClusterDefaults.ApplyMessaging(o);
            configuration.GetSection(ClusterDefaults.MessagingSection).Bind(o);
        });
        client.Configure<GatewayOptions>(o =>
        {
            ClusterDefaults.ApplyGateways(o);
            configuration.GetSection(ClusterDefaults.GatewaysSection).Bind(o);
        });
        client.UseRedisClustering(o => o.ConfigurationOptions = redis.ToConfigurationOptions());
        if (ClusterDefaults.Certificate(options.Tls) is { } certificate)
        {
            client.UseTls(certificate, tls => ClusterDefaults.RequireSameCertificate(tls, certificate));
        }

        return client;
    }
}
