using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.Silo.Models;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// The embedded default serves the trained chat model (models/demo-chat): ListModels lists it alone, a session created
/// without a model gets it, and its greedy reply to a ChatML prompt is a turn that ends with &lt;|im_end|&gt;.
/// </summary>
public sealed class DemoChatIntegrationTests
{
    // BOS, then "<|im_start|>user\nTell me a fortune.<|im_end|>\n<|im_start|>assistant\n" encoded with the model's
    // tokenizer.model (python3-sentencepiece), as its chat_template renders one user message with add_generation_prompt.
    private static readonly int[] Prompt = [1, 3, 282, 15, 350, 301, 266, 432, 4020, 4, 15, 3, 284, 15];
    private const int ImEnd = 4;

    [Fact]
    public async Task The_embedded_default_serves_demo_chat_whose_greedy_reply_ends_its_turn()
    {
        // The option's own default, named because InProcessGateway otherwise selects the random model: what
        // `dotnet run --project src/Gateway` serves (appsettings.json leaves Models:BuiltIn unset).
        await using var gateway = await InProcessGateway.StartAsync(new Dictionary<string, string?>
        {
            ["Models:BuiltIn"] = new ModelCatalogOptions().BuiltIn.ToString(),
            ["Models:CacheBudgetMiB"] = "16",
        });
        using var channel = gateway.CreateChannel();
        var client = new KvCacheClient(channel);

        var model = Assert.Single((await client.ListModelsAsync(new ListModelsRequest())).Models);
        Assert.Equal(ModelCatalog.ChatModelId, model.Id);
        Assert.Equal(4096, model.VocabSize);
        var session = await client.CreateSessionAsync(new CreateSessionRequest());
        Assert.Equal(ModelCatalog.ChatModelId, session.Model);

        await client.AppendAsync(new AppendRequest { SessionId = session.Id, TokenIds = { Prompt } });
        var request = DecodeCalls.Greedy(session.Id, 200);
        request.StopTokenIds.Add(ImEnd);
        var reply = await DecodeCalls.ReadAllAsync(client.Decode(request));
        Assert.True(reply.Count > 3, $"a reply of {reply.Count} tokens");
        Assert.Equal(ImEnd, reply[^1].TokenId);
    }
}
