using Xunit;

namespace KvCache.Testing.Redis;

/// <summary>
/// xunit fixture owning one <see cref="RedisServer"/> for a test class (IClassFixture) or collection.
/// Derive to pick the project's port range or a password.
/// </summary>
public class RedisServerFixture(RedisServerOptions options) : IAsyncLifetime
{
    public RedisServerFixture() : this(new RedisServerOptions())
    {
    }

    public RedisServerOptions Options { get; } = options;

    public RedisServer Server { get; private set; } = null!;

    public string Endpoint => Server.Endpoint;

    public async Task InitializeAsync() => Server = await RedisServer.StartAsync(Options);

    public async Task DisposeAsync()
    {
        if (Server is not null)
        {
            await Server.DisposeAsync();
        }
    }
}
