using KvCache.Testing.Redis;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// This test project's loopback ports: 23000-23499 for gateways and silos, 23500-23999 for Redis.
/// Both lie below Linux's ephemeral range (32768-60999), so an outgoing connection's local port can never take a
/// port between the probe that finds it free and the child process that binds it.
/// </summary>
public static class TestPorts
{
    public const int FirstServicePort = 23000;

    public const int LastServicePort = 23499;

    public static RedisServerOptions Redis { get; } = new() { FirstPort = 23500, LastPort = 23999 };
}
