// The KV-cache service's public gRPC gateway: by default it hosts its own Orleans silo (one process, no Redis needed);
// with Cluster:Mode=Routed it is an Orleans client of the silo processes that share Spill:Redis.
using KvCache.Gateway;
using KvCache.Gateway.Admin;
using KvCache.Gateway.Auth;
using KvCache.Gateway.Observability;
using KvCache.Gateway.OpenAI;
using KvCache.Gateway.Quotas;
using KvCache.Gateway.Services;
using KvCache.Silo.Hosting;
using KvCache.Silo.Models;
using KvCache.Silo.Observability;
using KvCache.Silo.Storage.Redis;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

// Settings are read beside the program, wherever it is started from.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.WebHost.ConfigureKestrel(kestrel =>
{
    // gRPC clients speak HTTP/2 with prior knowledge on a cleartext port (the Health endpoint sets Http1 for itself,
    // the OpenAI endpoint Http1: Kestrel offers HTTP/2 beside HTTP/1.1 only over TLS).
    kestrel.ConfigureEndpointDefaults(listen => listen.Protocols = HttpProtocols.Http2);

    // Kestrel:Limits (e.g. Http2:MaxStreamsPerConnection, MaxConcurrentConnections) bounds what one client can hold open.
    builder.Configuration.GetSection("Kestrel:Limits").Bind(kestrel.Limits);
});
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60));
builder.Services
    .AddGrpc(o =>
    {
        builder.Configuration.GetSection("Grpc").Bind(o);
        o.EnableDetailedErrors = false;
    })
    .AddServiceOptions<KvCacheService>(o => o.Interceptors.Add<SessionErrorInterceptor>())
    .AddServiceOptions<AdminService>(o => o.Interceptors.Add<SessionErrorInterceptor>());
builder.Services.AddGrpcReflection();
builder.Services.AddGrpcHealthChecks().AddCheck<ReadinessHealthCheck>("ready");
builder.Services.AddOptions<AuthOptions>().Bind(builder.Configuration.GetSection(AuthOptions.SectionName));
builder.Services.AddSingleton<TenantAuthenticator>();
builder.Services.AddQuotas(builder.Configuration);
builder.Services.AddSingleton<IReadinessCheck, GatewayReadinessCheck>();
builder.Services.AddKvCacheSessionService(builder.Configuration);
builder.Services.AddOpenAI(builder.Configuration);
if (GatewayMode.IsRouted(builder.Configuration))
{
    builder.UseOrleansClient(client => client.UseKvCacheCluster(builder.Configuration));
}
else
{
    builder.UseOrleans(silo => silo.AddKvCacheSilo(builder.Configuration).UseKvCacheClustering(builder.Configuration));
}

var app = builder.Build();

// Spill:Redis settings that cannot work (a missing TLS file) stop the process in one line naming the setting.
if (RedisStoreOptions.StartFailure(app.Services) is { } redisFailure)
{
    Console.Error.WriteLine($"error: {redisFailure}");
    return ExitCodes.BadConfiguration;
}

// A model that cannot be served stops the process before it listens, with the reason in one line.
if (ModelCatalog.LoadFailure(app.Services) is { } failure)
{
    Console.Error.WriteLine($"error: {failure}");
    return ExitCodes.ModelLoadFailed;
}

TenantAuthenticator authenticator;
try
{
    authenticator = app.Services.GetRequiredService<TenantAuthenticator>();
}
catch (OptionsValidationException e)
{
    // Refused before serving, naming the setting: better than every call failing later.
    Console.Error.WriteLine($"error: {string.Join(" ", e.Failures)}");
    return ExitCodes.BadConfiguration;
}

if (authenticator.IsDevMode)
{
    GatewayLog.DevMode(app.Logger, app.Services.GetRequiredService<IOptions<AuthOptions>>().Value.DevTenant);
}

app.MapGrpcService<KvCacheService>();
app.MapGrpcService<AdminService>();
app.MapGrpcHealthChecksService();
app.MapGrpcReflectionService();
app.MapHealthAndMetrics();
OpenAIEndpoints.Map(app);
app.Run();
return 0;
