using System.Text;
using KvCache.Silo.Storage.Redis;
using Xunit;

namespace KvCache.Silo.Tests.Storage;

public sealed class RedisClientIntegrationTests(SiloRedisFixture redis) : IClassFixture<SiloRedisFixture>, IAsyncLifetime
{
    private readonly string _prefix = "c" + Guid.NewGuid().ToString("N")[..12] + ":";
    private readonly RedisClient _client = new(new RedisClientOptions { Endpoint = redis.Endpoint });

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _client.DisposeAsync();

    [Fact]
    public async Task Many_concurrent_commands_are_pipelined_and_matched_in_order()
    {
        var work = Enumerable.Range(0, 2000).Select(async i =>
        {
            string key = _prefix + i;
            Assert.Equal("OK", (await _client.ExecuteAsync(["SET", key, $"value-{i}"])).AsString());
            Assert.Equal($"value-{i}", (await _client.ExecuteAsync(["GET", key])).AsString());
            Assert.Equal(i + 1, (await _client.ExecuteAsync(["INCRBY", key + ":n", i + 1])).AsInt64());
        });
        await Task.WhenAll(work);
        Assert.Equal(2000, (await _client.ExecuteAsync(["EVAL", "return #redis.call('KEYS', ARGV[1])", 0, _prefix + "*:n"])).AsInt64());
    }

    [Fact]
    public async Task Large_values_go_both_ways_and_into_caller_memory()
    {
        var value = new byte[(3 << 20) + 17];
        new Random(3).NextBytes(value);
        using (var set = RedisRequest.Create("SET", _prefix + "big", value))
        {
            await _client.ExecuteAsync(set);
        }

        Assert.Equal(value, (await _client.ExecuteAsync(["GET", _prefix + "big"])).Bytes);

        var destination = new byte[value.Length + 5];
        using (var get = RedisRequest.Create("GET", _prefix + "big"))
        {
            Assert.Equal(value.Length, await _client.ExecuteIntoAsync(get, destination));
        }

        Assert.Equal(value, destination[..value.Length]);

        using (var range = RedisRequest.Create("GETRANGE", _prefix + "big", 10, 19))
        {
            Assert.Equal(10, await _client.ExecuteIntoAsync(range, destination));
        }

        Assert.Equal(value[10..20], destination[..10]);

        using var missing = RedisRequest.Create("GET", _prefix + "nothing");
        Assert.Equal(-1, await _client.ExecuteIntoAsync(missing, destination));
    }

    [Fact]
    public async Task A_value_that_does_not_fit_is_refused_and_the_connection_survives()
    {
        await _client.ExecuteAsync(["SET", _prefix + "v", new byte[100_000]]);
        using var get = RedisRequest.Create("GET", _prefix + "v");
        await Assert.ThrowsAsync<ArgumentException>(() => _client.ExecuteIntoAsync(get, new byte[99_999]).AsTask());
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal("PONG", (await _client.ExecuteAsync(["PING"])).AsString());
        }
    }

    [Fact]
    public async Task Error_replies_throw_the_servers_message()
    {
        await _client.ExecuteAsync(["SET", _prefix + "text", "abc"]);
        var e = await Assert.ThrowsAsync<RedisException>(() => _client.ExecuteAsync(["INCR", _prefix + "text"]).AsTask());
        Assert.Contains("not an integer", e.Message);
        var unknown = await Assert.ThrowsAsync<RedisException>(() => _client.ExecuteAsync(["NOSUCHCOMMAND", "x"]).AsTask());
        Assert.Contains("unknown command", unknown.Message);
        Assert.IsNotType<RedisConnectionException>(unknown);
        Assert.Equal("abc", (await _client.ExecuteAsync(["GET", _prefix + "text"])).AsString());
    }

    [Fact]
    public async Task Scripts_run_by_sha_and_reload_after_a_flush()
    {
        var script = new RedisScript("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}");
        for (int round = 0; round < 2; round++)
        {
            var reply = (await _client.EvalAsync(script, [_prefix + "k"], ["a", 41])).AsArray();
            Assert.Equal([_prefix + "k", "a"], reply.Take(2).Select(r => r.AsString()));
            Assert.Equal(42, reply[2].AsInt64());
            await _client.ExecuteAsync(["SCRIPT", "FLUSH"]);
        }

        var e = await Assert.ThrowsAsync<RedisException>(() => _client.EvalAsync(new RedisScript("error('boom')"), [], []).AsTask());
        Assert.Contains("boom", e.Message);
    }

    [Fact]
    public async Task Database_is_selected_on_connect()
    {
        await using var db3 = new RedisClient(new RedisClientOptions { Endpoint = redis.Endpoint, Database = 3 });
        await db3.ExecuteAsync(["SET", _prefix + "db", "three"]);
        Assert.Equal("three", (await db3.ExecuteAsync(["GET", _prefix + "db"])).AsString());
        Assert.True((await _client.ExecuteAsync(["GET", _prefix + "db"])).IsNull);
    }

    [Fact]
    public async Task A_lost_connection_fails_commands_in_flight_then_reconnects()
    {
        await using var victim = new RedisClient(new RedisClientOptions { Endpoint = redis.Endpoint, Connections = 1 });
        string name = "victim" + Guid.NewGuid().ToString("N")[..8];
        await victim.ExecuteAsync(["CLIENT", "SETNAME", name]);
        var blocked = victim.ExecuteAsync(["BLPOP", _prefix + "never", 0]).AsTask();
        var queuedBehind = victim.ExecuteAsync(["PING"]).AsTask();

        // Kill it once the BLPOP is really blocked on the server (the client list shows it).
        while (!(await _client.ExecuteAsync(["CLIENT", "LIST"])).AsString()!.Split('\n')
                   .Any(l => l.Contains($"name={name} ", StringComparison.Ordinal) && l.Contains("cmd=blpop", StringComparison.Ordinal)))
        {
            await Task.Yield();
        }

        await _client.ExecuteAsync(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        await Assert.ThrowsAsync<RedisConnectionException>(() => blocked);
        await Assert.ThrowsAsync<RedisConnectionException>(() => queuedBehind);
        Assert.Equal("PONG", (await victim.ExecuteAsync(["PING"])).AsString());
    }

    [Fact]
    public async Task An_unreachable_server_fails_cleanly()
    {
        await using var nowhere = new RedisClient(new RedisClientOptions { Endpoint = "127.0.0.1:1", Connections = 1 });
        var e = await Assert.ThrowsAsync<RedisConnectionException>(() => nowhere.ExecuteAsync(["PING"]).AsTask());
        Assert.Contains("127.0.0.1:1", e.Message);
        await Assert.ThrowsAsync<RedisConnectionException>(() => nowhere.ExecuteAsync(["PING"]).AsTask());
    }

    [Fact]
    public void Options_never_print_the_password()
    {
        var options = new RedisStoreOptions { Password = "hunter2-secret" };
        Assert.DoesNotContain("hunter2-secret", options.ToString());
        Assert.Contains("Password=***", options.ToString());
        Assert.Throws<ArgumentException>(() => new RedisClientOptions { Endpoint = "no-port" }.Validate());
        Assert.Throws<ArgumentException>(() => new RedisStoreOptions { KeyPrefix = "a:b" }.Validate());
    }

    [Fact]
    public async Task Requests_encode_text_integers_and_bytes()
    {
        using var request = RedisRequest.Create("SET", _prefix + "é", -42);
        await _client.ExecuteAsync(request);
        Assert.Equal("-42", (await _client.ExecuteAsync(["GET", _prefix + "é"])).AsString());
        Assert.Equal(3, (await _client.ExecuteAsync(["STRLEN", _prefix + "é"])).AsInt64());
        byte[] binary = [0, 13, 10, 255];
        await _client.ExecuteAsync(["SET", _prefix + "bin", binary]);
        Assert.Equal(binary, (await _client.ExecuteAsync(["GET", _prefix + "bin"])).Bytes);
        Assert.Equal(Encoding.UTF8.GetBytes("é"), (await _client.ExecuteAsync(["ECHO", "é"])).Bytes);
    }
}

public sealed class RedisClientAuthIntegrationTests(SiloPasswordRedisFixture redis) : IClassFixture<SiloPasswordRedisFixture>
{
    [Fact]
    public async Task Authenticates_with_the_password()
    {
        await using var client = new RedisClient(new RedisClientOptions { Endpoint = redis.Endpoint, Password = redis.Server.Password });
        Assert.Equal("PONG", (await client.ExecuteAsync(["PING"])).AsString());
    }

    [Fact]
    public async Task A_wrong_or_missing_password_is_refused_with_the_servers_message()
    {
        await using var wrong = new RedisClient(new RedisClientOptions { Endpoint = redis.Endpoint, Password = "wrong" });
        var e = await Assert.ThrowsAsync<RedisException>(() => wrong.ExecuteAsync(["PING"]).AsTask());
        Assert.Contains("WRONGPASS", e.Message);
        Assert.DoesNotContain("wrong\"", e.Message);

        await using var none = new RedisClient(new RedisClientOptions { Endpoint = redis.Endpoint });
        var noAuth = await Assert.ThrowsAsync<RedisException>(() => none.ExecuteAsync(["PING"]).AsTask());
        Assert.Contains("NOAUTH", noAuth.Message);
    }
}
