using KvCache.Testing.Redis;

namespace KvCache.Silo.Tests.Storage;

/// <summary>A redis-server in this project's port range (22000-22999; below the ephemeral range 32768-60999).</summary>
public sealed class SiloRedisFixture() : RedisServerFixture(new RedisServerOptions { FirstPort = 22000, LastPort = 22999 });

/// <summary>A redis-server that requires a password.</summary>
public sealed class SiloPasswordRedisFixture() : RedisServerFixture(new RedisServerOptions { FirstPort = 22000, LastPort = 22999, Password = "s3cret-pw" });

/// <summary>A redis-server that serves only TLS, with a certificate from a CA made for it, and requires a password.</summary>
public sealed class SiloTlsRedisFixture() : RedisServerFixture(new RedisServerOptions { FirstPort = 22000, LastPort = 22999, Password = "tls-s3cret-pw", Tls = true });

/// <summary>A TLS-only redis-server that also requires a client certificate from its CA (tls-auth-clients yes).</summary>
public sealed class SiloMutualTlsRedisFixture() : RedisServerFixture(new RedisServerOptions { FirstPort = 22000, LastPort = 22999, Tls = true, TlsAuthClients = true });
