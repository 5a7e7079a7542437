using KvCache.Gateway.Auth;
using KvCache.Gateway.Quotas;
using KvCache.Gateway.Services;
using KvCache.Transport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// The single-node service's gRPC surface in this process (real <see cref="KvCacheService"/>, silo, in-memory store,
/// Kestrel on a free port), whose request delegates can also be called directly for fast fuzzing.
/// </summary>
internal sealed class InProcessGateway : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Dictionary<string, RequestDelegate> _delegates;

    private InProcessGateway(WebApplication app, int port)
    {
        _app = app;
        Port = port;
        Address = new Uri($"http://127.0.0.1:{port}");
        _delegates = ((IEndpointRouteBuilder)app).DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>()
            .ToDictionary(e => e.RoutePattern.RawText!, e => e.RequestDelegate!);
    }

    public int Port { get; }

    public Uri Address { get; }

    public IServiceProvider Services => _app.Services;

    public static async Task<InProcessGateway> StartAsync(IReadOnlyDictionary<string, string?> settings)
    {
        var port = GatewayProcess.FreePort();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        // The endpoint goes through configuration too, replacing the one appsettings.json names.
        builder.Configuration.AddInMemoryCollection(settings).AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{port}",
            ["Kestrel:Endpoints:Grpc:Protocols"] = "Http2",
        });
        builder.WebHost.ConfigureKestrel(kestrel => builder.Configuration.GetSection("Kestrel:Limits").Bind(kestrel.Limits));
        builder.Services.AddGrpcTransport(o => builder.Configuration.GetSection("Grpc").Bind(o));
        builder.Services.AddOptions<AuthOptions>().Bind(builder.Configuration.GetSection(AuthOptions.SectionName));
        builder.Services.AddSingleton<TenantAuthenticator>();
        builder.Services.AddQuotas(builder.Configuration);
        builder.Services.AddSingleton<KvCacheService>();
        builder.Services.AddSilo(builder.Configuration);
        var app = builder.Build();
        app.Services.GetRequiredService<KvCacheService>().Map(app);
        app.MapGrpcFallback();
        await app.StartAsync();
        return new InProcessGateway(app, port);
    }

    public GrpcChannel CreateChannel() => GrpcChannel.ForAddress(Address);

    /// <summary>The request delegate serving <paramref name="path"/> (the unimplemented fallback for unknown ones).</summary>
    public RequestDelegate Delegate(string path) =>
        _delegates.GetValueOrDefault(path) ?? _delegates["{unimplementedService}/{unimplementedMethod}"];

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
