using KvCache.Silo.Placement;

namespace KvCache.Silo.Tests.Placement;

public sealed class InMemorySiloLoadTableUnitTests : SiloLoadTableContract
{
    protected override ISiloLoadTable Table { get; } = new InMemorySiloLoadTable();
}
