using Microsoft.Extensions.AI;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Client.Internal;

/// <summary>Which of a caller's messages a turn sends, as kvcache.v1 messages.</summary>
internal static class ChatMessages
{
    /// <summary>
    /// A new conversation sends every message (after <paramref name="instructions"/> as a system message, when given);
    /// an existing one sends those after the last assistant message, because the session holds its own replies.
    /// </summary>
    public static IEnumerable<V1.ChatMessage> ToSend(List<ChatMessage> messages, string? instructions) =>
        instructions is null
            ? messages.Skip(messages.FindLastIndex(m => m.Role == ChatRole.Assistant) + 1).Select(ToProto)
            : messages.Select(ToProto).Prepend(new V1.ChatMessage { Role = ChatRole.System.Value, Content = instructions });

    private static V1.ChatMessage ToProto(ChatMessage message)
    {
        if (message.Contents.FirstOrDefault(c => c is not TextContent) is { } other)
        {
            throw new NotSupportedException($"A KvCache session takes text only; a {message.Role} message holds {other.GetType().Name}.");
        }

        return new V1.ChatMessage { Role = message.Role.Value, Content = message.Text };
    }
}
