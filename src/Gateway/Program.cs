// The KV-cache service's public gRPC gateway: with an in-process silo (the single-node service, the default), or
// routing to silo processes (Cluster:Mode=Routed).
using KvCache.Gateway.Admin;
using KvCache.Gateway.Auth;
using KvCache.Gateway.Observability;
using KvCache.Gateway.Quotas;
using KvCache.Gateway.Routing;
using KvCache.Gateway.Services;
using KvCache.Silo.Observability;
using KvCache.Transport;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

var builder = WebApplication.CreateBuilder(args);
builder.WebHost.ConfigureKestrel(kestrel =>
{
    // gRPC clients speak HTTP/2 with prior knowledge on a cleartext port.
    kestrel.ConfigureEndpointDefaults(listen => listen.Protocols = HttpProtocols.Http2);

    // Kestrel:Limits (e.g. Http2:MaxStreamsPerConnection, MaxConcurrentConnections) bounds what one client can hold open.
    builder.Configuration.GetSection("Kestrel:Limits").Bind(kestrel.Limits);
});
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60));
builder.Services.AddGrpcTransport(o => builder.Configuration.GetSection("Grpc").Bind(o));
builder.Services.AddOptions<AuthOptions>().Bind(builder.Configuration.GetSection(AuthOptions.SectionName));
builder.Services.AddSingleton<TenantAuthenticator>();
builder.Services.AddQuotas(builder.Configuration);
builder.Services.AddSingleton<KvCacheService>();
builder.Services.AddSingleton<GatewayMetrics>();
builder.Services.AddSingleton<IMetricsSource>(sp => sp.GetRequiredService<GatewayMetrics>());
builder.Services.AddSingleton<IReadinessCheck, GatewayReadinessCheck>();
var routed = builder.Configuration.GetSection(RoutingOptions.SectionName).Get<RoutingOptions>()?.Mode == ClusterMode.Routed;
if (routed)
{
    builder.Services.AddClusterRouting(builder.Configuration);
    builder.Services.AddClusterAdmin();
}
else
{
    builder.Services.AddSilo(builder.Configuration);
}

var app = builder.Build();
var authenticator = app.Services.GetRequiredService<TenantAuthenticator>();
if (authenticator.IsDevMode)
{
    GatewayLog.DevMode(app.Logger, app.Services.GetRequiredService<IOptions<AuthOptions>>().Value.DevTenant);
}

app.Services.GetRequiredService<KvCacheService>().Map(app);
if (routed)
{
    app.MapClusterAdmin();
}

app.MapHealthAndMetrics();
app.MapGrpcFallback();
app.Run();
