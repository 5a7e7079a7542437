using KvCache.Silo.Cluster.Membership;

namespace KvCache.Silo.Tests.Cluster;

public sealed class InMemoryMembershipTableUnitTests : MembershipTableContract
{
    protected override IMembershipTable Table { get; } = new InMemoryMembershipTable();
}
