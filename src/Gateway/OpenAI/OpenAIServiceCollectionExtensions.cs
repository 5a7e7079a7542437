using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.DependencyInjection.Extensions;

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
            services.AddOptions<RedisStoreOptions>().Bind(configuration.GetSection(RedisStoreOptions.SectionName));
            services.TryAddSingleton<RedisConnection>();
            services.AddSingleton<IOpenAIStore, RedisOpenAIStore>();
        }

        services.AddSingleton<OpenAITurns>();
        services.AddSingleton<OpenAIEndpoints>();
        return services;
    }
}
