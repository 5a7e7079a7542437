using KvCache.Gateway.Admin.Internal;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace KvCache.Gateway.Admin;

public static class AdminEndpointExtensions
{
    /// <summary>Adds the operator API (kvcache.admin.v1.Admin); needs the routing services of Routed mode.</summary>
    public static IServiceCollection AddClusterAdmin(this IServiceCollection services) => services.AddSingleton<AdminService>();

    /// <summary>Maps kvcache.admin.v1.Admin.</summary>
    public static IEndpointRouteBuilder MapClusterAdmin(this IEndpointRouteBuilder endpoints)
    {
        endpoints.ServiceProvider.GetRequiredService<AdminService>().Map(endpoints);
        return endpoints;
    }
}
