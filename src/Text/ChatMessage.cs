namespace KvCache.Text;

/// <summary>One message of a conversation: a role ("system", "user", "assistant", "tool") and its text.</summary>
public readonly record struct ChatMessage(string Role, string Content);

/// <summary>A conversation the model's chat template cannot render (an unknown role, roles out of order).</summary>
public sealed class ChatTemplateException(string message) : Exception(message);

/// <summary>A piece of a rendered prompt: template text (special tokens written in it are recognised) or message
/// content (tokenized as plain text, so a message cannot forge a turn marker).</summary>
public readonly record struct PromptPart(string Text, bool IsContent)
{
    public static PromptPart Template(string text) => new(text, false);

    public static PromptPart Content(string text) => new(text, true);
}
