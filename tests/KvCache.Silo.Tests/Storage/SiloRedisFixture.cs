using KvCache.Testing.Redis;

namespace KvCache.Silo.Tests.Storage;

/// <summary>A redis-server in this project's port range (42000-42999).</summary>
public sealed class SiloRedisFixture() : RedisServerFixture(new RedisServerOptions { FirstPort = 42000, LastPort = 42999 });

/// <summary>A redis-server that requires a password.</summary>
public sealed class SiloPasswordRedisFixture() : RedisServerFixture(new RedisServerOptions { FirstPort = 42000, LastPort = 42999, Password = "s3cret-pw" });
