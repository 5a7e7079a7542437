using KvCache.Silo.Sessions;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using KvCache.Silo.Tests.Infrastructure;
using KvCache.Silo.Tests.Snapshots;
using KvCache.Testing.Redis;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using Xunit;

namespace KvCache.Silo.Tests.Storage;

/// <summary>
/// The spill store against a real TLS-only redis-server whose certificate comes from a private CA made for the test:
/// trusted through <c>Spill:Redis:TlsCaCertificate</c> it works, from the store up to a silo's spill and restore;
/// without that CA, with another one or under another name the handshake is refused, and no error or log line carries
/// the password. With <c>tls-auth-clients yes</c> only a client presenting a certificate from the CA gets in.
/// </summary>
public sealed class RedisTlsIntegrationTests(SiloTlsRedisFixture redis, SiloMutualTlsRedisFixture mutual)
    : IClassFixture<SiloTlsRedisFixture>, IClassFixture<SiloMutualTlsRedisFixture>, IDisposable
{
    private readonly string _prefix = "tls" + Guid.NewGuid().ToString("N")[..12];
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("kvcache-redis-tls-test-");

    private RedisTlsFiles Tls => redis.Server.Tls!;

    public void Dispose() => _folder.Delete(recursive: true);

    [Fact]
    public async Task The_store_round_trips_a_token_log_and_a_snapshot_trusting_the_private_ca()
    {
        var logger = new RecordingLogger<RedisConnection>();
        var options = TrustingOptions();
        await using var connection = new RedisConnection(Options.Create(options), logger);
        var store = new RedisSessionStore(connection, Options.Create(options));
        Assert.True(connection.IsConnected);

        var key = new SessionKey("acme", "over-tls");
        Assert.True(await store.TryCreateAsync(new SessionRecord(key, "m", "full", DateTimeOffset.UtcNow)));
        int[] tokens = [.. Enumerable.Range(0, 1000).Select(i => i * 7)];
        await store.AppendTokensAsync(key, 0, tokens);
        var read = new int[tokens.Length];
        Assert.Equal(tokens.Length, await store.ReadTokensAsync(key, 0, read));
        Assert.Equal(tokens, read);

        using var cache = ByteArrayKvCache.Filled("full", bytesPerToken: 300_000, position: 7, seed: 5); // 2.1 MB: 3 chunks
        float[] logits = [.. Enumerable.Range(0, 100).Select(i => i * 0.25f)];
        var header = await SnapshotWriter.WriteAsync(store, key, cache, "m", "fp", logits, CancellationToken.None);
        Assert.Equal(3, header.ChunkCount);
        using var restored = new ByteArrayKvCache("full", 300_000);
        var restoredLogits = new float[logits.Length];
        Assert.Equal(7, await SnapshotReader.RestoreAsync(store, key, restored, "m", "fp", restoredLogits, CancellationToken.None));
        Assert.Equal(cache.State, restored.State);
        Assert.Equal(logits, restoredLogits);

        Assert.Contains($"trusting the system's roots and {Tls.CaCertificate}", connection.ToString(), StringComparison.Ordinal);
        Assert.Contains(logger.Entries, e => e.StartsWith("Information: Connected to", StringComparison.Ordinal));
        Assert.All(logger.Entries.Append(connection.ToString()).Append(options.ToString()), e => Assert.DoesNotContain(redis.Server.Password!, e, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("no CA")]
    [InlineData("another CA")]
    public async Task A_client_that_does_not_trust_the_servers_ca_is_refused_and_says_why_without_the_password(string trust)
    {
        var logger = new RecordingLogger<RedisConnection>();
        var options = TrustingOptions();
        options.TlsCaCertificate = trust == "no CA" ? null : RedisTlsFiles.Create(_folder.FullName, "other").CaCertificate;
        await using var connection = new RedisConnection(Options.Create(options), logger);
        var store = new RedisSessionStore(connection, Options.Create(options));

        Assert.False(connection.IsConnected);
        var e = await Assert.ThrowsAsync<RedisConnectionException>(() => store.GetAsync(new SessionKey("acme", "s")).AsTask());

        // The start's log line names the handshake's failure: with no CA, .NET's chain check; with another, the CA callback's.
        string reason = trust == "no CA"
            ? "The remote certificate is invalid because of errors in the certificate chain: UntrustedRoot"
            : "The remote certificate was rejected by the provided RemoteCertificateValidationCallback.";
        Assert.Contains(logger.Entries, entry => entry.StartsWith("Warning: Not connected to", StringComparison.Ordinal) && entry.Contains($"({reason})", StringComparison.Ordinal));
        Assert.All(logger.Entries.Append(e.ToString()).Append(connection.ToString()), entry => Assert.DoesNotContain(redis.Server.Password!, entry, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(RedisTlsFiles.ServerName, true)]
    [InlineData("redis.example.com", false)]
    public async Task The_servers_name_is_checked_against_TlsTargetHost(string targetHost, bool connects)
    {
        var options = TrustingOptions();
        options.TlsTargetHost = targetHost;
        await using var connection = new RedisConnection(Options.Create(options));
        var store = new RedisSessionStore(connection, Options.Create(options));

        Assert.Equal(connects, connection.IsConnected);
        var get = store.GetAsync(new SessionKey("acme", "absent")).AsTask();
        if (connects)
        {
            Assert.Null(await get);
        }
        else
        {
            await Assert.ThrowsAsync<RedisConnectionException>(() => get);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_server_requiring_client_certificates_admits_only_a_client_presenting_one_from_its_ca(bool presents)
    {
        var files = mutual.Server.Tls!;
        var options = new RedisStoreOptions
        {
            Endpoint = mutual.Endpoint,
            KeyPrefix = _prefix,
            UseTls = true,
            TlsCaCertificate = files.CaCertificate,
            TlsClientCertificate = presents ? files.ClientCertificate : null,
            TlsClientKey = presents ? files.ClientKey : null,
            ConnectTimeout = TimeSpan.FromSeconds(2),
        };
        await using var connection = new RedisConnection(Options.Create(options));
        var store = new RedisSessionStore(connection, Options.Create(options));

        var key = new SessionKey("acme", "mutual");
        var create = store.TryCreateAsync(new SessionRecord(key, "m", "full", DateTimeOffset.UtcNow)).AsTask();
        if (presents)
        {
            Assert.True(await create);
            Assert.Equal(1, await store.TakeEpochAsync(key));
        }
        else
        {
            await Assert.ThrowsAsync<RedisConnectionException>(() => create);
            Assert.False(connection.IsConnected);
        }
    }

    [Fact]
    public async Task A_sessions_turns_survive_spill_and_restore_through_the_tls_redis()
    {
        int[] prompt = [.. Enumerable.Range(0, 40).Select(i => (i * 31 + 7) % 500)];
        int[] turn = [11, 12, 13];
        await using var cluster = await SessionTestCluster.StartAsync(settings:
        [
            new("Spill:Redis:Endpoint", redis.Endpoint),
            new("Spill:Redis:Password", redis.Server.Password),
            new("Spill:Redis:UseTls", "true"),
            new("Spill:Redis:TlsCaCertificate", Tls.CaCertificate),
            new("Spill:Redis:KeyPrefix", _prefix),
        ]);
        Assert.IsType<RedisSessionStore>(cluster.Store);

        var twin = await cluster.CreateWithPromptAsync("acme", "twin", prompt);
        await cluster.DecodeAsync(twin, 4);
        await cluster.Sessions.AppendAsync(twin, AppendInput.Tokens(turn, 0), default);
        var expected = await cluster.DecodeAsync(twin, 6);

        var key = await cluster.CreateWithPromptAsync("acme", "spilled", prompt);
        await cluster.DecodeAsync(key, 4);
        Assert.Equal(SessionResidency.Spilled, (await cluster.Sessions.SpillAsync(key, default)).Residency);
        Assert.NotNull(await cluster.Store.GetSnapshotAsync(key));

        // The next call restores the session from the TLS Redis; its turn lands in the token log there.
        var appended = await cluster.Sessions.AppendAsync(key, AppendInput.Tokens(turn, 0), default);
        Assert.Equal(prompt.Length + 4 + turn.Length, appended.Position);
        Assert.Equal(prompt.Length + 4 + turn.Length, await cluster.Store.GetTokenCountAsync(key));
        Assert.Equal(expected.Select(t => t.TokenId), (await cluster.DecodeAsync(key, 6)).Select(t => t.TokenId));
    }

    /// <summary>Options for the TLS fixture's server, trusting its CA; a short connect timeout, as some handshakes fail.</summary>
    private RedisStoreOptions TrustingOptions() => new()
    {
        Endpoint = redis.Endpoint,
        Password = redis.Server.Password,
        KeyPrefix = _prefix,
        UseTls = true,
        TlsCaCertificate = Tls.CaCertificate,
        ConnectTimeout = TimeSpan.FromSeconds(2),
    };
}
