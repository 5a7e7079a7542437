using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KvCache.Silo.Observability;

/// <summary>
/// <c>/healthz/live</c>, <c>/healthz/ready</c> and <c>/metrics</c>. Kubelet probes and Prometheus speak
/// HTTP/1.1, the gRPC port only HTTP/2 cleartext: serve these on a Kestrel endpoint named
/// <see cref="EndpointName"/> with <c>Protocols=Http1</c> (<c>Kestrel__Endpoints__Health__Url</c>).
/// </summary>
public static class ObservabilityEndpoints
{
    public const string EndpointName = "Health";

    public static IEndpointRouteBuilder MapHealthAndMetrics(this IEndpointRouteBuilder endpoints)
    {
        // Liveness is local on purpose: a Redis or peer outage must not get every pod restarted.
        endpoints.MapGet("/healthz/live", () => Results.Text("live\n"));
        endpoints.MapGet("/healthz/ready", async (HttpContext http) =>
        {
            var checks = http.RequestServices.GetServices<IReadinessCheck>();
            foreach (var check in checks)
            {
                bool ready;
                try
                {
                    ready = await check.IsReadyAsync(http.RequestAborted);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    ObservabilityLog.ReadinessCheckFailed(http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(ObservabilityEndpoints)), ex, check.GetType().Name);
                    ready = false;
                }

                if (!ready)
                {
                    return Results.Text($"not ready: {check.GetType().Name}\n", statusCode: StatusCodes.Status503ServiceUnavailable);
                }
            }

            return Results.Text("ready\n");
        });
        endpoints.MapGet("/metrics", (HttpContext http) =>
        {
            var writer = new PrometheusTextWriter();
            foreach (var source in http.RequestServices.GetServices<IMetricsSource>())
            {
                source.WriteTo(writer);
            }

            return Results.Text(writer.ToString(), PrometheusTextWriter.ContentType);
        });
        return endpoints;
    }
}

internal static partial class ObservabilityLog
{
    [LoggerMessage(700, LogLevel.Warning, "Readiness check {Check} failed")]
    public static partial void ReadinessCheckFailed(ILogger logger, Exception exception, string check);
}
