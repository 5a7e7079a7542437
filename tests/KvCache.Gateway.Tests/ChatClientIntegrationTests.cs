using Grpc.Net.Client;
using KvCache.Client;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using Microsoft.Extensions.AI;
using Xunit;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace KvCache.Gateway.Tests;

/// <summary>
/// The .NET <see cref="IChatClient"/> (src/Client) against the gateway: a conversation is a session, and a later turn
/// sends only what the session does not hold. Model: a generated random model with KvCache.Text.Tests' SentencePiece
/// tokenizer and ChatML template (its replies are noise, but tokens and positions are exact under greedy sampling).
/// </summary>
public sealed class ChatClientIntegrationTests : IAsyncLifetime
{
    private readonly string _model = Directory.CreateTempSubdirectory("kvcache-chat-client-").FullName;
    private InProcessGateway _gateway = null!;
    private GrpcChannel _channel = null!;
    private KvCache.Contracts.V1.KvCache.KvCacheClient _grpc = null!;

    public async Task InitializeAsync()
    {
        ChatTestModels.Write(_model, seed: 23);

        _gateway = await InProcessGateway.StartAsync(new Dictionary<string, string?>
        {
            ["Models:Directories:0"] = _model,
            ["Models:CacheBudgetMiB"] = "64",
        });
        _channel = GrpcChannel.ForAddress(_gateway.Address);
        _grpc = new KvCache.Contracts.V1.KvCache.KvCacheClient(_channel);
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        await _gateway.DisposeAsync();
        Directory.Delete(_model, recursive: true);
    }

    [Fact]
    public async Task A_two_turn_streamed_conversation_sends_only_the_new_message_on_turn_two()
    {
        var chat = _grpc.AsIChatClient();
        var options = new ChatOptions { Instructions = "Answer briefly.", MaxOutputTokens = 12, Temperature = 0 };

        var first = await StreamAsync(chat, [new AiChatMessage(ChatRole.User, "Tell me a fortune.")], options);
        var id = Assert.Single(first.Select(u => u.ConversationId).Distinct());
        Assert.NotNull(id);
        var usage1 = Usage(first);
        Assert.Equal(0, usage1.CachedInputTokenCount);
        Assert.InRange(usage1.OutputTokenCount!.Value, 1, 12);
        var afterFirst = await PositionAsync(id);
        Assert.Equal(usage1.InputTokenCount + usage1.OutputTokenCount, afterFirst);

        options.ConversationId = id;
        var second = await StreamAsync(chat, [new AiChatMessage(ChatRole.User, "Another one.")], options);
        var usage2 = Usage(second);

        // The history is the session's: counted as cached input, not sent again.
        Assert.Equal(afterFirst, usage2.CachedInputTokenCount);
        Assert.InRange(usage2.InputTokenCount!.Value, 1, afterFirst - 1);
        Assert.Equal(afterFirst + usage2.InputTokenCount + usage2.OutputTokenCount, await PositionAsync(id));
        Assert.All(second, u => Assert.Equal(id, u.ConversationId));
        Assert.NotNull(second[^1].FinishReason);
    }

    [Fact]
    public async Task A_caller_that_resends_the_whole_history_gets_the_same_turn_as_one_that_sends_only_the_new_message()
    {
        var chat = _grpc.AsIChatClient();
        var turns = new List<(ChatResponse Reply, ChatUsage Usage)>();
        foreach (var resendHistory in (bool[])[false, true])
        {
            var options = new ChatOptions { MaxOutputTokens = 8, Temperature = 0 };
            List<AiChatMessage> history = [new(ChatRole.User, "Hello.")];
            var reply = await chat.GetResponseAsync(history, options);
            history.AddMessages(reply);
            options.ConversationId = reply.ConversationId;

            var next = new AiChatMessage(ChatRole.User, "And then?");
            var turn = await chat.GetResponseAsync(resendHistory ? [.. history, next] : [next], options);
            turns.Add((turn, new ChatUsage(turn.Usage!.InputTokenCount, turn.Usage.CachedInputTokenCount, turn.Usage.OutputTokenCount, await PositionAsync(turn.ConversationId!))));
        }

        Assert.Equal(turns[0].Usage, turns[1].Usage);
        Assert.Equal(turns[0].Reply.Text, turns[1].Reply.Text);
    }

    [Fact]
    public async Task A_conversation_id_the_service_does_not_know_creates_that_session()
    {
        var chat = _grpc.AsIChatClient();
        var reply = await chat.GetResponseAsync("Hi.", new ChatOptions { ConversationId = "support-ticket-42", MaxOutputTokens = 4, Temperature = 0 });

        Assert.Equal("support-ticket-42", reply.ConversationId);
        Assert.Equal(reply.Usage!.InputTokenCount + reply.Usage.OutputTokenCount, await PositionAsync("support-ticket-42"));
    }

    private static async Task<List<ChatResponseUpdate>> StreamAsync(IChatClient chat, List<AiChatMessage> messages, ChatOptions options)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in chat.GetStreamingResponseAsync(messages, options))
        {
            updates.Add(update);
        }

        return updates;
    }

    private static UsageDetails Usage(List<ChatResponseUpdate> updates) =>
        Assert.IsType<UsageContent>(Assert.Single(updates.SelectMany(u => u.Contents), c => c is UsageContent)).Details;

    private async Task<long> PositionAsync(string sessionId) =>
        (await _grpc.GetSessionAsync(new GetSessionRequest { SessionId = sessionId })).Position;

    private sealed record ChatUsage(long? Input, long? Cached, long? Output, long Position);
}
