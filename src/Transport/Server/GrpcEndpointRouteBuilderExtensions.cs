using Google.Protobuf;
using KvCache.Transport;
using KvCache.Transport.Internal;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps gRPC methods onto endpoint routing (the counterpart of Grpc.AspNetCore's MapGrpcService).</summary>
public static class GrpcEndpointRouteBuilderExtensions
{
    private static readonly string[] s_post = ["POST"];

    public static IEndpointConventionBuilder MapGrpcUnary<TRequest, TResponse>(
        this IEndpointRouteBuilder endpoints,
        Method<TRequest, TResponse> method,
        UnaryServerMethod<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(handler);
        if (method.Type != MethodType.Unary)
        {
            throw new ArgumentException($"Method {method.FullName} is {method.Type}, not Unary.", nameof(method));
        }

        var callHandler = CreateHandler(endpoints, method);
        return endpoints.MapMethods(method.FullName, s_post, http => callHandler.HandleUnaryAsync(http, handler))
            .WithDisplayName($"gRPC {method.FullName}");
    }

    public static IEndpointConventionBuilder MapGrpcServerStreaming<TRequest, TResponse>(
        this IEndpointRouteBuilder endpoints,
        Method<TRequest, TResponse> method,
        ServerStreamingServerMethod<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(handler);
        if (method.Type != MethodType.ServerStreaming)
        {
            throw new ArgumentException($"Method {method.FullName} is {method.Type}, not ServerStreaming.", nameof(method));
        }

        var callHandler = CreateHandler(endpoints, method);
        return endpoints.MapMethods(method.FullName, s_post, http => callHandler.HandleServerStreamingAsync(http, handler))
            .WithDisplayName($"gRPC {method.FullName}");
    }

    /// <summary>
    /// Answers gRPC requests for any "/service/method" path not mapped above with a trailers-only UNIMPLEMENTED.
    /// It has the lowest route order, so it never shadows the application's own endpoints.
    /// </summary>
    public static IEndpointConventionBuilder MapGrpcFallback(this IEndpointRouteBuilder endpoints)
    {
        var logger = GetLogger(endpoints);
        var builder = endpoints.MapMethods(
                "{unimplementedService}/{unimplementedMethod}",
                s_post,
                http => UnimplementedHandler.HandleAsync(http, logger))
            .WithDisplayName("gRPC unimplemented method");
        builder.Add(b => ((RouteEndpointBuilder)b).Order = int.MaxValue);
        return builder;
    }

    private static ServerCallHandler<TRequest, TResponse> CreateHandler<TRequest, TResponse>(
        IEndpointRouteBuilder endpoints,
        Method<TRequest, TResponse> method)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var options = endpoints.ServiceProvider.GetRequiredService<IOptions<GrpcServerOptions>>().Value;
        return new ServerCallHandler<TRequest, TResponse>(method, options, GetLogger(endpoints));
    }

    private static ILogger GetLogger(IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetService<GrpcTransportMarker>() is null)
        {
            throw new InvalidOperationException("Call services.AddGrpcTransport() before mapping gRPC methods.");
        }

        return endpoints.ServiceProvider.GetRequiredService<ILoggerFactory>().CreateLogger("KvCache.Transport.Server");
    }
}
