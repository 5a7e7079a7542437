using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

public static class RedisSessionStoreServiceCollectionExtensions
{
    /// <summary>
    /// Adds the spill store on Redis as <see cref="ISessionStore"/>: <see cref="RedisStoreOptions"/> bound from
    /// <see cref="RedisStoreOptions.SectionName"/> and checked at start, one <see cref="RedisConnection"/> (also for
    /// other components that need the same Redis) and <see cref="RedisSessionStore"/>.
    /// </summary>
    public static IServiceCollection AddRedisSessionStore(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<RedisStoreOptions>().Bind(configuration.GetSection(RedisStoreOptions.SectionName)).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RedisStoreOptions>, RedisStoreOptionsValidator>());
        services.TryAddSingleton<RedisConnection>();
        services.TryAddSingleton<RedisSessionStore>();
        services.TryAddSingleton<ISessionStore>(sp => sp.GetRequiredService<RedisSessionStore>());
        return services;
    }
}
