using KvCache.Silo.Runtime;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Hosting;

/// <summary>Spills idle sessions periodically, and every session when the host stops.</summary>
internal sealed class SiloLifecycleService(
    SessionCatalog catalog,
    IOptions<SiloOptions> options,
    TimeProvider time,
    ILogger<SiloLifecycleService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.IdleCheckPeriod, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var spilled = await catalog.CollectIdleAsync();
                if (spilled > 0)
                {
                    SiloLifecycleLog.IdleSpilled(logger, spilled, catalog.ActiveCount);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await catalog.SpillAllAsync();
    }
}

internal static partial class SiloLifecycleLog
{
    [LoggerMessage(300, LogLevel.Information, "Spilled {Count} idle sessions; {Active} remain active")]
    public static partial void IdleSpilled(ILogger logger, int count, int active);
}
