// A cluster silo: sessions of the models it serves, spilled to the shared Redis store, owned through the Redis
// directory and membership, and served to gateways on the internal endpoint (kvcache.internal.v1.Silo).
using KvCache.Silo.Observability;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration.Json;

var builder = WebApplication.CreateBuilder(args);

// Settings come from silo.appsettings.json, not appsettings.json: a gateway's file may sit in the same folder.
var gatewayFile = builder.Configuration.Sources.OfType<JsonConfigurationSource>().Where(s => s.Path?.StartsWith("appsettings", StringComparison.Ordinal) == true).ToList();
foreach (var source in gatewayFile)
{
    builder.Configuration.Sources.Remove(source);
}

builder.Configuration.Sources.Insert(0, new JsonConfigurationSource { Path = "silo.appsettings.json", Optional = true, ReloadOnChange = false });
builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureEndpointDefaults(listen => listen.Protocols = HttpProtocols.Http2));
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60));
builder.Services.AddGrpcTransport(o => builder.Configuration.GetSection("Grpc").Bind(o));
builder.Services.AddClusterSilo(builder.Configuration);

var app = builder.Build();
app.MapSiloGrpc();
app.MapHealthAndMetrics();
app.MapGrpcFallback();
app.Run();
