using KvCache.Silo.Storage;

namespace KvCache.Silo.Tests.Storage;

public sealed class InMemorySessionStoreUnitTests : SessionStoreContract
{
    protected override ISessionStore Store { get; } = new InMemorySessionStore();
}
