// The KV-cache service's public gRPC gateway: with an in-process silo (the single-node service, the default), or
// routing to silo processes (Cluster:Mode=Routed).
using KvCache.Gateway.Auth;
using KvCache.Gateway.Routing;
using KvCache.Gateway.Services;
using KvCache.Transport;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

var builder = WebApplication.CreateBuilder(args);
builder.WebHost.ConfigureKestrel(kestrel =>
{
    // gRPC clients speak HTTP/2 with prior knowledge on a cleartext port.
    kestrel.ConfigureEndpointDefaults(listen => listen.Protocols = HttpProtocols.Http2);
});
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60));
builder.Services.AddGrpcTransport(o => builder.Configuration.GetSection("Grpc").Bind(o));
builder.Services.AddOptions<AuthOptions>().Bind(builder.Configuration.GetSection(AuthOptions.SectionName));
builder.Services.AddSingleton<TenantAuthenticator>();
builder.Services.AddSingleton<KvCacheService>();
if (builder.Configuration.GetSection(RoutingOptions.SectionName).Get<RoutingOptions>()?.Mode == ClusterMode.Routed)
{
    builder.Services.AddClusterRouting(builder.Configuration);
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
app.MapGrpcFallback();
app.Run();
