using KvCache.Testing.Redis;

namespace KvCache.Silo.Tests.Storage;

/// <summary>A redis-server in this project's port range (22000-22999; below the ephemeral range 32768-60999).</summary>
public sealed class SiloRedisFixture() : RedisServerFixture(new RedisServerOptions { FirstPort = 22000, LastPort = 22999 });

/// <summary>A redis-server that requires a password.</summary>
public sealed class SiloPasswordRedisFixture() : RedisServerFixture(new RedisServerOptions { FirstPort = 22000, LastPort = 22999, Password = "s3cret-pw" });
