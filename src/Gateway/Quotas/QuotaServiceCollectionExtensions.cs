using KvCache.Gateway.Quotas.Internal;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace KvCache.Gateway.Quotas;

public static class QuotaServiceCollectionExtensions
{
    /// <summary>Registers <see cref="TenantQuotas"/> with <see cref="QuotaOptions"/> from the <c>Quotas</c> section, checked at start.</summary>
    public static IServiceCollection AddQuotas(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<QuotaOptions>().Bind(configuration.GetSection(QuotaOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<QuotaOptions>, QuotaOptionsValidator>();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<TenantQuotas>();
        return services;
    }
}
