using KvCache.Silo.Hosting;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Cluster.Membership.Internal;

/// <summary>
/// The single-node service's view: this process is the only silo, so an entry any other silo left behind (a
/// previous, crashed process of the same name has another generation) belongs to a dead silo.
/// </summary>
internal sealed class LocalSiloStatusOracle(IOptions<SiloOptions> options) : ISiloStatusOracle
{
    // One generation per process: a restarted process is a new silo, whatever its name.
    private static readonly long ProcessGeneration = SiloAddress.NewGeneration(TimeProvider.System);

    public SiloAddress SiloAddress { get; } = new(Endpoint(options.Value.SiloName ?? Environment.MachineName), ProcessGeneration);

    public ValueTask<bool> IsLiveAsync(SiloAddress silo, CancellationToken cancellationToken) =>
        ValueTask.FromResult(silo == SiloAddress);

    /// <summary>Silo names are free text; an endpoint allows fewer characters.</summary>
    private static string Endpoint(string siloName) =>
        string.Concat(siloName.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':' ? c : '-'));
}
