using KvCache.Silo.Placement;
using Microsoft.Extensions.Hosting;

namespace KvCache.Silo.Migration;

[SiloPinnedPlacement]
internal sealed class SiloControlGrain(SiloLoads loads, SessionDrain drain, IHostApplicationLifetime lifetime) : Grain, ISiloControlGrain
{
    public Task<SiloLoad> GetLoadAsync() => Task.FromResult(loads.LocalLoad());

    public async Task<DrainResult> DrainAsync()
    {
        var result = await drain.DrainAsync(CancellationToken.None);

        // The rest of a graceful stop (leaving membership) runs as on SIGTERM; the sessions are gone already.
        lifetime.StopApplication();
        return result;
    }
}
