using System.Text.Json;
using Grpc.Core;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.Testing.Python;
using KvCache.Testing.Redis;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// The single-node service as a real process on a real redis-server, driven by a stock python3-grpcio client
/// and by the project's own client: restart, kill -9 and bad input (deadlines, unknown methods and services,
/// non-ASCII status messages among it).
/// </summary>
// Not beside other silo-hosting classes: on two cores a starved silo misses Orleans' 2 s response timeout.
[Collection(ClusterProcessesCollection.Name)]
public sealed class SingleNodeIntegrationTests : IAsyncLifetime
{
    private static readonly string Script = Path.Combine(AppContext.BaseDirectory, "Python", "kvcache_client.py");
    private static readonly string ProtoRoot = Path.Combine(AppContext.BaseDirectory, "Protos");
    private static readonly string ModelDirectory = Path.Combine(Path.GetTempPath(), "kvcache-gateway-test-models");
    private static readonly int[] Prompt = Enumerable.Range(0, 80).Select(i => (i * 53 + 7) % 509).ToArray();

    private RedisServer _redis = null!;

    public async Task InitializeAsync() =>
        _redis = await RedisServer.StartAsync(TestPorts.Redis);

    public async Task DisposeAsync() => await _redis.DisposeAsync();

    [Fact]
    public async Task Python_client_resumes_a_spilled_session_after_a_restart_exactly_like_its_undisturbed_twin()
    {
        await using var gateway = StartGateway(GatewayProcess.FreePort());
        await gateway.StartAsync();
        using var stubs = await PythonGrpc.GenerateStubsAsync(ProtoRoot, "kvcache/v1/kvcache.proto");
        var args = new { a = "resumed", b = "twin", prompt = Prompt, first = 40, rest = 24 };

        var phase1 = await RunAsync(stubs, gateway, "resume-phase1", args);
        await gateway.StopAsync();
        await gateway.StartAsync();
        var phase2 = await RunAsync(stubs, gateway, "resume-phase2", args);

        var twin = Ints(phase1, "b_tokens");
        Assert.Equal(64, twin.Length);
        Assert.Equal(Prompt.Length, phase1.GetProperty("append_position").GetInt64());
        Assert.Equal(3, phase1.GetProperty("append_top").GetArrayLength());
        Assert.Equal(twin[..40], Ints(phase1, "a_tokens"));
        Assert.Equal("FINISH_REASON_MAX_TOKENS", phase1.GetProperty("b_finish").GetString());

        var beforeSpill = phase1.GetProperty("a_before_spill");
        Assert.Equal("SESSION_STATE_ACTIVE", beforeSpill.GetProperty("state").GetString());
        Assert.Equal("silo-a", beforeSpill.GetProperty("owner_silo").GetString());
        Assert.Equal(120, beforeSpill.GetProperty("position").GetInt64());
        Assert.Equal(120 * beforeSpill.GetProperty("bytes_per_token").GetInt64(), beforeSpill.GetProperty("cache_bytes").GetInt64());
        Assert.Equal("SESSION_STATE_SPILLED", phase1.GetProperty("a_spilled").GetProperty("state").GetString());

        var afterRestart = phase2.GetProperty("a_after_restart");
        Assert.Equal("SESSION_STATE_SPILLED", afterRestart.GetProperty("state").GetString());
        Assert.Equal(120, afterRestart.GetProperty("position").GetInt64());
        Assert.Equal(twin[40..], Ints(phase2, "a_tokens"));
        Assert.Equal(Enumerable.Range(120, 24).Select(p => (long)p), phase2.GetProperty("a_positions").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal(144, phase2.GetProperty("a_active").GetProperty("position").GetInt64());

        // Restored from the snapshot SpillSession wrote: nothing replayed from the token log.
        const string restored = "Activated session dev/resumed: 120 tokens, snapshot at 120, replayed 0";
        Assert.True(await gateway.PrintedAsync(restored), $"'{restored}' not in the log:\n{gateway.Output}");
    }

    [Fact]
    public async Task Kill_9_during_a_decode_then_restart_loses_and_duplicates_no_token()
    {
        await using var gateway = StartGateway(GatewayProcess.FreePort());
        await gateway.StartAsync();
        var client = gateway.Client;
        var expected = await DecodeTwinAsync(client, "undisturbed", 200);

        await CreateWithPromptAsync(client, "killed");
        var request = DecodeCalls.Greedy("killed", 200, requestId: "turn-1");
        var received = new List<DecodeEvent>();
        using (var call = client.Decode(request))
        {
            while (received.Count < 25 && await call.ResponseStream.MoveNext())
            {
                received.Add(call.ResponseStream.Current);
            }

            await gateway.KillAsync();
        }

        await gateway.StartAsync();
        var resumed = await client.GetSessionAsync(new GetSessionRequest { SessionId = "killed" });
        Assert.InRange(resumed.Position, Prompt.Length + received.Count, Prompt.Length + 200);

        // The client retries the same request: what the dead process made durable is replayed, the rest generated.
        var retried = await DecodeCalls.ReadAllAsync(client.Decode(request));

        Assert.Equal(expected.Take(25), received.Select(e => e.TokenId));
        Assert.Equal(expected, retried.Select(e => e.TokenId));
        Assert.Equal(Enumerable.Range(Prompt.Length, 200).Select(p => (long)p), retried.Select(e => e.Position));
        Assert.Equal(resumed.Position - Prompt.Length, retried.Count(e => e.Replayed));
        Assert.Equal(Prompt.Length + 200, (await client.GetSessionAsync(new GetSessionRequest { SessionId = "killed" })).Position);

        // Checked last so that a failure here still shows whether tokens were lost: the new process, under the dead
        // one's silo name, had not loaded the session when it was asked.
        Assert.Equal(SessionState.Spilled, resumed.State);
        Assert.Equal("", resumed.OwnerSilo);
    }

    [Fact]
    public async Task Bad_inputs_get_their_status_codes_and_the_service_keeps_serving()
    {
        const string key = "key-of-acme";
        const string nonAsciiModel = "modèle « 💾 » не найдена";
        const int longDecode = 4000;
        const string otherKey = "key-of-globex";
        await using var gateway = StartGateway(
            GatewayProcess.FreePort(),
            "--Auth:ApiKeys:0:Tenant=acme",
            $"--Auth:ApiKeys:0:Key={key}",
            "--Auth:ApiKeys:1:Tenant=globex",
            "--Auth:ApiKeys:1:KeySha256=" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData("key-of-globex"u8)));
        await gateway.StartAsync(new Metadata { { "authorization", $"Bearer {key}" } });
        using var stubs = await PythonGrpc.GenerateStubsAsync(ProtoRoot, "kvcache/v1/kvcache.proto");

        var codes = await RunAsync(stubs, gateway, "bad-inputs", new
        {
            key,
            other_key = otherKey,
            session = "guarded",
            vocab = 512,
            max_append = 8192,
            prompt = Prompt,
            long_decode = longDecode,
            non_ascii_model = nonAsciiModel,
        });

        var expected = new Dictionary<string, string>
        {
            ["create"] = "OK",
            ["create_duplicate"] = "ALREADY_EXISTS",
            ["no_key"] = "UNAUTHENTICATED",
            ["wrong_key"] = "UNAUTHENTICATED",
            ["other_tenant"] = "NOT_FOUND",
            ["unknown_session"] = "NOT_FOUND",
            ["unknown_session_decode"] = "NOT_FOUND",
            ["bad_session_id"] = "INVALID_ARGUMENT",
            ["unknown_model"] = "INVALID_ARGUMENT",
            ["unknown_codec"] = "INVALID_ARGUMENT",
            ["huge_model"] = "INVALID_ARGUMENT",
            ["huge_codec"] = "INVALID_ARGUMENT",
            ["huge_session_id"] = "INVALID_ARGUMENT",
            ["huge_request_id"] = "INVALID_ARGUMENT",
            ["huge_decode_request_id"] = "INVALID_ARGUMENT",
            ["long_unknown_model"] = "INVALID_ARGUMENT",
            ["out_of_vocab"] = "INVALID_ARGUMENT",
            ["negative_token"] = "INVALID_ARGUMENT",
            ["empty_append"] = "INVALID_ARGUMENT",
            ["oversized_append"] = "INVALID_ARGUMENT",
            ["oversized_message"] = "RESOURCE_EXHAUSTED",
            ["decode_before_append"] = "FAILED_PRECONDITION",
            ["decode_zero_tokens"] = "INVALID_ARGUMENT",
            ["bad_sampling"] = "INVALID_ARGUMENT",
            ["append"] = "OK",
            ["expired_deadline"] = "DEADLINE_EXCEEDED",
            ["unknown_method"] = "UNIMPLEMENTED",
            ["unknown_service"] = "UNIMPLEMENTED",
            ["other_tenant_delete"] = "NOT_FOUND",
            ["decode_after"] = "OK",
        };
        foreach (var (call, code) in expected)
        {
            Assert.True(codes.TryGetProperty(call, out var actual), $"no result for {call}");
            Assert.True(code == actual.GetString(), $"{call}: expected {code}, got {actual.GetString()}");
        }

        Assert.Equal(0, codes.GetProperty("other_tenant_lists").GetArrayLength());
        foreach (var call in new[] { "huge_model", "huge_codec", "huge_session_id", "huge_request_id", "huge_decode_request_id", "long_unknown_model" })
        {
            var details = codes.GetProperty(call + "_details").GetString()!;
            Assert.True(details.Length < 200, $"{call}: a {details.Length}-character message");
        }

        Assert.Contains($"'{new string('m', 64)}…'", codes.GetProperty("long_unknown_model_details").GetString(), StringComparison.Ordinal);
        var retries = codes.GetProperty("append_retries").EnumerateArray().ToArray();
        Assert.Equal(Prompt.Length + 3, retries[0][0].GetInt64());
        Assert.Equal(3, retries[0][1].GetInt32());
        Assert.Equal([false, true], retries.Select(r => r[2].GetBoolean()));
        Assert.Equal(retries[0][0].GetInt64(), retries[1][0].GetInt64());
        Assert.Equal(retries[0][3].GetRawText(), retries[1][3].GetRawText());
        Assert.Contains($"'{nonAsciiModel}'", codes.GetProperty("unknown_model_details").GetString(), StringComparison.Ordinal);
        var afterDeadline = Ints(codes, "positions_after_deadline");
        Assert.Equal(afterDeadline[0], afterDeadline[1]);
        Assert.True(afterDeadline[0] < Prompt.Length + longDecode, $"the decode ran to its end ({afterDeadline[0]}) after its deadline");
    }

    private GatewayProcess StartGateway(int port, params string[] settings) =>
        new(port, [
            $"--Spill:Redis:Endpoint={_redis.Endpoint}",
            $"--Models:DemoModelDirectory={ModelDirectory}",
            "--Silo:SiloName=silo-a",
            .. settings,
        ]);

    private static async Task<JsonElement> RunAsync(PythonStubs stubs, GatewayProcess gateway, string scenario, object args)
    {
        var run = await PythonGrpc.RunScriptAsync(stubs, Script, [gateway.Target, scenario, JsonSerializer.Serialize(args)], TimeSpan.FromMinutes(3));
        var lastLine = run.StandardOutput.TrimEnd().Split('\n')[^1];
        return JsonDocument.Parse(lastLine).RootElement;
    }

    private static int[] Ints(JsonElement element, string name) =>
        element.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private static async Task CreateWithPromptAsync(KvCacheClient client, string sessionId)
    {
        await client.CreateSessionAsync(new CreateSessionRequest { SessionId = sessionId });
        var append = new AppendRequest { SessionId = sessionId };
        append.TokenIds.AddRange(Prompt);
        await client.AppendAsync(append);
    }

    private static async Task<int[]> DecodeTwinAsync(KvCacheClient client, string sessionId, int tokens)
    {
        await CreateWithPromptAsync(client, sessionId);
        return await DecodeCalls.GreedyTokensAsync(client, sessionId, tokens);
    }
}
