using Xunit;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// Test classes that run whole process clusters run one at a time: a dozen silo processes at once on two cores
/// starve heartbeats past the tests' short leases, and silos get declared dead for no fault of their own.
/// </summary>
[CollectionDefinition(Name)]
public sealed class ClusterProcessesCollection
{
    public const string Name = "Cluster processes";
}
