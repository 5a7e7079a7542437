using Grpc.Core;
using KvCache.Contracts.Admin.V1;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.GpuWorker;
using KvCache.Silo.Placement;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// For every codec: a session migrated live between two Orleans silo processes moves its compressed cache (restored on
/// the target, nothing replayed) and continues exactly like an undisturbed twin.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class ClusterCodecMigrationIntegrationTests(CodecModelsFixture models) : IClassFixture<CodecModelsFixture>, IAsyncLifetime
{
    private static readonly int[] Prompt = Enumerable.Range(0, 90).Select(i => (i * 29 + 3) % 500).ToArray();

    private static readonly string[] Codecs =
        [FullKvCache.CodecId, SvdGqaKvCache.CodecId, YocoKvCache.CodecId, FusedKvCache.CodecId, FusedKvCache.LiteCodecId, FourierKvCache.CodecId];

    private ProcessCluster _cluster = null!;

    public async Task InitializeAsync()
    {
        var directories = Codecs.Skip(1).Select((c, i) => $"--Models:Directories:{i + 1}={models.Models[c].Directory}").ToArray();
        _cluster = await ProcessCluster.StartAsync(silos: 2, directories, models.Models[Codecs[0]].Directory);
    }

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Every_codec_round_trips_a_live_migration_like_its_twin()
    {
        foreach (var codec in Codecs)
        {
            var (directory, cacheBytes, _) = models.Models[codec];
            var config = ModelConfig.Load(Path.Combine(directory, "config.json"));
            var model = Path.GetFileName(directory);
            var twin = $"twin-{codec}";
            var moved = $"moved-{codec}";

            await CreateOnAsync("silo-1", model, codec, twin);
            var expected = await DecodeAsync(twin, 30);
            await CreateOnAsync("silo-0", model, codec, moved);
            var head = await DecodeAsync(moved, 12);
            var migrated = await _cluster.Admin.MigrateSessionAsync(new MigrateSessionRequest { SessionId = moved, TargetSilo = "silo-1" });
            var tail = await DecodeAsync(moved, 18);

            Assert.Equal(expected, head.Concat(tail));
            Assert.Equal(cacheBytes(config, Prompt.Length + 12), migrated.CacheBytes);
            Assert.Equal(("silo-0", "silo-1"), (migrated.FromSilo, migrated.ToSilo));
            Assert.Equal(("silo-1", codec), (migrated.Session.OwnerSilo, migrated.Session.Codec));
            var restored = $"Activated session dev/{moved}: {Prompt.Length + 12} tokens, snapshot at {Prompt.Length + 12}, replayed 0";
            Assert.Contains(restored, _cluster.Silo("silo-1").Output);
        }
    }

    private async Task CreateOnAsync(string silo, string model, string codec, string id)
    {
        var hinted = new CallOptions(new Metadata { { PlacementHint.Header, silo } });
        var client = _cluster.Gateway.Client;
        await client.CreateSessionAsync(new CreateSessionRequest { Model = model, Codec = codec, SessionId = id }, hinted);
        await client.AppendAsync(new AppendRequest { SessionId = id, TokenIds = { Prompt } }, hinted);
    }

    private Task<int[]> DecodeAsync(string id, int tokens) => DecodeCalls.GreedyTokensAsync(_cluster.Gateway.Client, id, tokens);
}
