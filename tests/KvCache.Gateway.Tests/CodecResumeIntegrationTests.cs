using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.GpuWorker;
using KvCache.Testing.Redis;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// For every codec: GetSession reports the codec and its bytes per token, and a session spilled by one silo
/// process continues in the next process exactly like an undisturbed twin.
/// </summary>
// Not beside other silo-hosting classes: on two cores a starved silo misses Orleans' 2 s response timeout.
[Collection(ClusterProcessesCollection.Name)]
public sealed class CodecResumeIntegrationTests(CodecModelsFixture models) : IClassFixture<CodecModelsFixture>, IAsyncLifetime
{
    private static readonly int[] Prompt = Enumerable.Range(0, 90).Select(i => (i * 29 + 3) % 500).ToArray();

    private RedisServer _redis = null!;

    /// <summary>Every codec with f32 caches, and every one but fourier with bf16 caches (half the bytes per token).</summary>
    public static TheoryData<string, KvCacheFormat> Codecs => new()
    {
        { FullKvCache.CodecId, KvCacheFormat.F32 },
        { SvdGqaKvCache.CodecId, KvCacheFormat.F32 },
        { YocoKvCache.CodecId, KvCacheFormat.F32 },
        { FusedKvCache.CodecId, KvCacheFormat.F32 },
        { FusedKvCache.LiteCodecId, KvCacheFormat.F32 },
        { FourierKvCache.CodecId, KvCacheFormat.F32 },
        { FullKvCache.CodecId, KvCacheFormat.Bf16 },
        { SvdGqaKvCache.CodecId, KvCacheFormat.Bf16 },
        { YocoKvCache.CodecId, KvCacheFormat.Bf16 },
        { FusedKvCache.CodecId, KvCacheFormat.Bf16 },
    };

    public async Task InitializeAsync() =>
        _redis = await RedisServer.StartAsync(TestPorts.Redis);

    public async Task DisposeAsync() => await _redis.DisposeAsync();

    [Theory]
    [MemberData(nameof(Codecs))]
    public async Task Spilled_session_resumes_in_a_new_process_like_its_twin(string codec, KvCacheFormat cacheFormat)
    {
        var (directory, cacheBytes, bytesPerToken) = models.Models[codec];
        var config = ModelConfig.Load(Path.Combine(directory, "config.json"));
        var modelId = Path.GetFileName(directory);
        int elementShrink = cacheFormat == KvCacheFormat.Bf16 ? 2 : 1;
        await using var gateway = new GatewayProcess(
            GatewayProcess.FreePort(),
            $"--Spill:Redis:Endpoint={_redis.Endpoint}",
            $"--Models:Directories:0={directory}",
            $"--Models:CacheFormat={cacheFormat}");
        await gateway.StartAsync();
        var client = gateway.Client;

        var twin = await CreateWithPromptAsync(client, modelId, codec, "twin");
        var expected = await DecodeAsync(client, twin.Id, 30);
        var resumed = await CreateWithPromptAsync(client, modelId, codec, "resumed");
        var head = await DecodeAsync(client, resumed.Id, 12);

        var active = await client.GetSessionAsync(new GetSessionRequest { SessionId = resumed.Id });
        Assert.Equal(codec, active.Codec);
        Assert.Equal(modelId, active.Model);
        Assert.Equal(bytesPerToken(config) / elementShrink, active.BytesPerToken);
        Assert.Equal(cacheBytes(config, (int)active.Position) / elementShrink, active.CacheBytes);
        Assert.Equal(SessionState.Spilled, (await client.SpillSessionAsync(new SpillSessionRequest { SessionId = resumed.Id })).State);

        await gateway.StopAsync();
        await gateway.StartAsync();
        var tail = await DecodeAsync(client, resumed.Id, 18);

        Assert.Equal(expected, head.Concat(tail));
        var restored = $"Activated session dev/resumed: {Prompt.Length + 12} tokens, snapshot at {Prompt.Length + 12}, replayed 0";
        Assert.True(await gateway.PrintedAsync(restored), $"'{restored}' not in the log:\n{gateway.Output}");
    }

    /// <summary>
    /// An operator switches a silo from bf16 to f32 caches: the bf16 snapshot belongs to another fingerprint, so the
    /// new process refuses it and rebuilds the session from its token log; nothing is lost, only replayed.
    /// </summary>
    [Fact]
    public async Task A_bf16_snapshot_is_refused_after_a_switch_to_f32_caches_and_the_token_log_rebuilds_the_session()
    {
        var (directory, _, _) = models.Models[FullKvCache.CodecId];
        var modelId = Path.GetFileName(directory);
        int port = GatewayProcess.FreePort();
        string[] args = [$"--Spill:Redis:Endpoint={_redis.Endpoint}", $"--Models:Directories:0={directory}"];
        await using (var bf16 = new GatewayProcess(port, [.. args, "--Models:CacheFormat=Bf16"]))
        {
            await bf16.StartAsync();
            await CreateWithPromptAsync(bf16.Client, modelId, FullKvCache.CodecId, "switched");
            await DecodeAsync(bf16.Client, "switched", 5);
            Assert.Equal(SessionState.Spilled, (await bf16.Client.SpillSessionAsync(new SpillSessionRequest { SessionId = "switched" })).State);
            await bf16.StopAsync();
        }

        await using var f32 = new GatewayProcess(port, args);
        await f32.StartAsync();
        var tail = await DecodeAsync(f32.Client, "switched", 4);
        Assert.Equal(4, tail.Length);
        var session = await f32.Client.GetSessionAsync(new GetSessionRequest { SessionId = "switched" });
        Assert.Equal(Prompt.Length + 9, session.Position);
        Assert.True(await f32.PrintedAsync("model fingerprint"), $"no refused-snapshot line in the log:\n{f32.Output}");
        var activated = $"Activated session dev/switched: {Prompt.Length + 5} tokens";
        Assert.True(await f32.PrintedAsync(activated), $"'{activated}' not in the log:\n{f32.Output}");
        Assert.Contains($"replayed {Prompt.Length + 5}", f32.Output, StringComparison.Ordinal);
    }

    private static async Task<Session> CreateWithPromptAsync(KvCacheClient client, string model, string codec, string id)
    {
        var session = await client.CreateSessionAsync(new CreateSessionRequest { Model = model, Codec = codec, SessionId = id });
        var append = new AppendRequest { SessionId = session.Id };
        append.TokenIds.AddRange(Prompt);
        await client.AppendAsync(append);
        return session;
    }

    private static Task<int[]> DecodeAsync(KvCacheClient client, string sessionId, int tokens) =>
        DecodeCalls.GreedyTokensAsync(client, sessionId, tokens);
}
