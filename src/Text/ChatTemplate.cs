using KvCache.Text.Internal;

namespace KvCache.Text;

/// <summary>
/// A chat template family rendered in C#: recognised from a Hugging Face <c>chat_template</c> by its markers, as
/// llama.cpp does, or named in configuration. Renders exactly what the family's Jinja template renders (with
/// Hugging Face's <c>trim_blocks</c> and <c>lstrip_blocks</c>) for the conversations the template accepts.
/// </summary>
/// <remarks>
/// <para>A session keeps the conversation's tokens, so a later turn renders only what follows the assistant's reply:
/// the end of the assistant's turn (<see cref="AssistantSuffix"/>, without the end-of-turn token when Decode already
/// produced it), then the new messages as the template renders messages that are not first, then the generation
/// prompt. For a conversation that alternates as the template expects, the session then holds the tokens a fresh
/// session holds after rendering the whole conversation with the reply's tokens as generated.</para>
/// </remarks>
public sealed class ChatTemplate
{
    private readonly ChatFamily _family;

    private ChatTemplate(ChatFamily family) => _family = family;

    /// <summary>The families this service renders: the names <c>Models:Text:&lt;model&gt;:ChatTemplate</c> takes.</summary>
    public static IReadOnlyList<string> Families => ChatFamily.Names;

    /// <summary>"chatml", "llama3", "llama2", "mistral", "gemma", "phi3" or "zephyr".</summary>
    public string Family => _family.Name;

    /// <summary>The special token that ends an assistant turn, when the family has its own (e.g. <c>&lt;|im_end|&gt;</c>);
    /// null where the turn ends with the model's EOS.</summary>
    public string? EndOfTurn => _family.EndOfTurn;

    /// <summary>Template text that follows an assistant message's content.</summary>
    public string AssistantSuffix => _family.AssistantSuffix;

    /// <summary>The family of a Jinja chat template, by the markers it writes; null when none is known.</summary>
    public static ChatTemplate? Detect(string template, string bosToken, string eosToken) =>
        ChatFamily.Detect(template, bosToken, eosToken) is { } family ? new ChatTemplate(family) : null;

    /// <exception cref="ArgumentException">Not one of <see cref="Families"/>.</exception>
    public static ChatTemplate ForFamily(string name, string bosToken, string eosToken) =>
        new(ChatFamily.Create(name, bosToken, eosToken)
            ?? throw new ArgumentException($"Unknown chat template '{name}'; known: {string.Join(", ", Families)}.", nameof(name)));

    /// <summary>A whole conversation from its start, ending with the generation prompt.</summary>
    /// <exception cref="ChatTemplateException">The template does not accept the conversation.</exception>
    public IReadOnlyList<PromptPart> Render(IReadOnlyList<ChatMessage> messages)
    {
        _family.Validate(messages, continuation: false);
        var parts = new List<PromptPart>();
        _family.Begin(parts);
        _family.Messages(messages, continuation: false, parts);
        _family.GenerationPrompt(parts);
        return parts;
    }

    /// <summary>New messages after an assistant reply: the rest of the assistant's turn (<paramref name="turnEnd"/>, from
    /// <see cref="AssistantSuffix"/>), the messages, the generation prompt.</summary>
    /// <exception cref="ChatTemplateException">The template does not accept the messages after an assistant turn.</exception>
    public IReadOnlyList<PromptPart> RenderContinuation(string turnEnd, IReadOnlyList<ChatMessage> messages)
    {
        _family.Validate(messages, continuation: true);
        var parts = new List<PromptPart>();
        if (turnEnd.Length > 0)
        {
            parts.Add(PromptPart.Template(turnEnd));
        }

        _family.Messages(messages, continuation: true, parts);
        _family.GenerationPrompt(parts);
        return parts;
    }
}
