using KvCache.Silo.Storage.Redis;

namespace KvCache.Gateway.OpenAI;

internal static class OpenAIServiceCollectionExtensions
{
    /// <summary>
    /// Registers the OpenAI-compatible API: <see cref="OpenAIOptions"/> (checked at start) and its store of response
    /// ids and conversation keys, in the spill store's Redis when <c>Spill:Redis:Endpoint</c> is set (the same
    /// <see cref="RedisConnection"/> an embedded silo's store uses), in memory otherwise.
    /// </summary>
    public static IServiceCollection AddOpenAI(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<OpenAIOptions>().Bind(configuration.GetSection(OpenAIOptions.SectionName)).ValidateDataAnnotations().ValidateOnStart();
        if (string.IsNullOrEmpty(configuration[$"{RedisStoreOptions.SectionName}:Endpoint"]))
        {
            services.AddSingleton<IOpenAIStore, InMemoryOpenAIStore>();
        }
        else
        {
            // The spill store's options and connection: a routed gateway holds no silo, so it adds them itself (an
            // embedded silo registers the same singletons; these registrations only add what is missing).
            services.AddRedisSessionStore(configuration);
            services.AddSingleton<IOpenAIStore, RedisOpenAIStore>();
        }

        services.AddSingleton<OpenAITurns>();
        services.AddSingleton<OpenAIEndpoints>();
        return services;
    }
}
