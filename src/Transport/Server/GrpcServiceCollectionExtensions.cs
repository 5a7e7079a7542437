using KvCache.Transport;
using KvCache.Transport.Internal;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

public static class GrpcServiceCollectionExtensions
{
    /// <summary>Registers the gRPC server transport and its options (validated at start).</summary>
    public static IServiceCollection AddGrpcTransport(this IServiceCollection services, Action<GrpcServerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddRouting();
        var builder = services.AddOptions<GrpcServerOptions>()
            .Validate(o => o.MaxReceiveMessageSize > 0, "GrpcServerOptions.MaxReceiveMessageSize must be positive.")
            .Validate(o => o.MaxSendMessageSize > 0, "GrpcServerOptions.MaxSendMessageSize must be positive.")
            .ValidateOnStart();
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        services.AddSingleton<GrpcTransportMarker>();
        return services;
    }
}
