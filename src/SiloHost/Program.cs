// A cluster silo: an Orleans silo holding the sessions of the models it serves, in a cluster formed through Redis
// (Orleans' Redis membership and grain directory), spilling to the same Redis. Its HTTP port serves health, metrics
// and, when enabled, the Orleans dashboard.
using KvCache.SiloHost;
using KvCache.Silo.Hosting;
using KvCache.Silo.Models;
using KvCache.Silo.Observability;
using KvCache.Silo.Storage.Redis;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration.Json;
using Orleans.Dashboard;

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });

// Settings come from silo.appsettings.json, not appsettings.json: a gateway's file may sit in the same folder.
foreach (var source in builder.Configuration.Sources.OfType<JsonConfigurationSource>().Where(s => s.Path?.StartsWith("appsettings", StringComparison.Ordinal) == true).ToList())
{
    builder.Configuration.Sources.Remove(source);
}

builder.Configuration.Sources.Insert(0, new JsonConfigurationSource { Path = "silo.appsettings.json", Optional = true, ReloadOnChange = false });
if (string.IsNullOrEmpty(builder.Configuration[$"{RedisStoreOptions.SectionName}:Endpoint"]))
{
    Console.Error.WriteLine($"A silo process joins a cluster through Redis: set {RedisStoreOptions.SectionName}:Endpoint.");
    return ExitCodes.BadConfiguration;
}

builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureEndpointDefaults(listen => listen.Protocols = HttpProtocols.Http1));
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60));
builder.Services.AddOptions<DashboardAccessOptions>().Bind(builder.Configuration.GetSection(DashboardAccessOptions.SectionName));
var dashboard = builder.Configuration.GetSection(DashboardAccessOptions.SectionName).Get<DashboardAccessOptions>() ?? new();
builder.UseOrleans(silo =>
{
    silo.AddKvCacheSilo(builder.Configuration).UseKvCacheClustering(builder.Configuration);
    if (KubernetesHosting.IsEnabled(builder.Configuration))
    {
        silo.UseKubernetesHosting();
    }

    if (dashboard.Enabled)
    {
        silo.AddDashboard();
    }
});

var app = builder.Build();

// Spill:Redis settings that cannot work (a missing TLS file) stop the process in one line naming the setting.
if (RedisStoreOptions.StartFailure(app.Services) is { } redisFailure)
{
    Console.Error.WriteLine($"error: {redisFailure}");
    return ExitCodes.BadConfiguration;
}

// A model that cannot be served stops the silo before it joins the cluster, with the reason in one line.
if (ModelCatalog.LoadFailure(app.Services) is { } failure)
{
    Console.Error.WriteLine($"error: {failure}");
    return ExitCodes.ModelLoadFailed;
}

app.MapHealthAndMetrics();
if (dashboard.Enabled)
{
    app.MapOrleansDashboard(DashboardAccessOptions.Path).AddEndpointFilter<DashboardAccessFilter>();
}

app.Run();
return 0;
