using System.Text.Json.Nodes;
using KvCache.Contracts.Admin.V1;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// A Responses API conversation (the official openai npm client, streamed, greedy) in a cluster of real processes on
/// real Redis: continued through a second gateway process after the first is stopped, then after the silo holding
/// its session is killed; every reply equals an undisturbed twin conversation's, and so does a fork's.
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class OpenAIClusterIntegrationTests : IAsyncLifetime
{
    private static readonly string[] Inputs = ["Tell me a fortune.", "Another one.", "And a third.", "One more."];

    private readonly string _model = Directory.CreateTempSubdirectory("kvcache-openai-cluster-").FullName;
    private ProcessCluster _cluster = null!;

    private string Model => Path.GetFileName(_model);

    public async Task InitializeAsync()
    {
        ChatTestModels.Write(_model, seed: 31);

        _cluster = await ProcessCluster.StartAsync(silos: 2, modelDirectory: _model);
        await _cluster.AddGatewayAsync();
    }

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        Directory.Delete(_model, recursive: true);
    }

    [Fact]
    public async Task A_conversation_continues_through_another_gateway_and_after_its_silo_is_killed_exactly_as_its_twin()
    {
        var (first, second) = (_cluster.Gateways[0], _cluster.Gateways[1]);
        var twin = new List<string>();
        string? previous = null;
        foreach (var input in Inputs)
        {
            var turn = await TurnAsync(first, input, previous);
            twin.Add((string)turn["text"]!);
            previous = (string)turn["id"]!;
        }

        Assert.All(twin, text => Assert.NotEmpty(text));

        // Turns 1 and 2 through the first gateway, which then stops: its response ids live in Redis.
        previous = null;
        JsonNode turnOf = null!;
        for (var i = 0; i < 2; i++)
        {
            turnOf = await TurnAsync(first, Inputs[i], previous);
            Assert.Equal(twin[i], (string)turnOf["text"]!);
            previous = (string)turnOf["id"]!;
        }

        var session = (string)turnOf["kvcache"]!["session_id"]!;
        await first.StopAsync();

        var third = await TurnAsync(second, Inputs[2], previous);
        Assert.Equal(twin[2], (string)third["text"]!);
        Assert.Equal(session, (string)third["kvcache"]!["session_id"]!);
        Assert.Equal((long)turnOf["kvcache"]!["position"]!, (long)third["usage"]!["input_tokens_details"]!["cached_tokens"]!);

        // The silo holding the session dies; once the cluster has declared it dead, the next turn restores the
        // session from Redis on the other silo.
        var owner = (await second.Client.GetSessionAsync(new GetSessionRequest { SessionId = session })).OwnerSilo;
        var victim = _cluster.Silos.Single(s => s.Name == owner);
        await victim.KillAsync();
        var admin = new AdminClient(second.Channel);
        while ((await admin.ListSilosAsync(new ListSilosRequest())).Silos.Any(s => s.Name == victim.Name && s.Status == "Active"))
        {
            await Task.Delay(100);
        }

        var fourth = await TurnAsync(second, Inputs[3], (string)third["id"]!);
        Assert.Equal(twin[3], (string)fourth["text"]!);
        Assert.Equal(session, (string)fourth["kvcache"]!["session_id"]!);
        Assert.Equal((long)third["kvcache"]!["position"]!, (long)fourth["usage"]!["input_tokens_details"]!["cached_tokens"]!);
        var moved = await second.Client.GetSessionAsync(new GetSessionRequest { SessionId = session });
        Assert.NotEqual(owner, moved.OwnerSilo);
        Assert.Equal((long)fourth["kvcache"]!["position"]!, moved.Position);

        // A fork from turn 2, through the routed gateway (a silo copies the prefix inside Redis), replies as the
        // twin's turn 3 and leaves the conversation where it was.
        var fork = await TurnAsync(second, Inputs[2], (string)turnOf["id"]!);
        Assert.NotEqual(session, (string)fork["kvcache"]!["session_id"]!);
        Assert.Equal(twin[2], (string)fork["text"]!);
        Assert.Equal(moved.Position, (await second.Client.GetSessionAsync(new GetSessionRequest { SessionId = session })).Position);
    }

    private async Task<JsonNode> TurnAsync(GatewayProcess gateway, string input, string? previous)
    {
        var turn = await OpenAINode.RunAsync(
            gateway.OpenAIAddress, "dev", "responses", new { model = Model, input, previous_response_id = previous, max_output_tokens = 8, stream = true });
        Assert.True(turn["error"] is null, turn.ToJsonString());
        return turn;
    }
}
