using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Storage;

namespace KvCache.Silo.Tests.Cluster;

public sealed class InMemoryGrainDirectoryUnitTests : GrainDirectoryContract
{
    protected override IGrainDirectory Directory { get; } = new InMemorySessionStore().Directory;
}
