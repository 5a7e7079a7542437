using System.ComponentModel.DataAnnotations;

namespace KvCache.Gateway.OpenAI;

/// <summary>The OpenAI-compatible API's settings (section <see cref="SectionName"/>), checked at start.</summary>
internal sealed class OpenAIOptions
{
    public const string SectionName = "OpenAI";

    /// <summary>How long a stored response id or chat conversation key stays usable after its last turn.</summary>
    [Range(typeof(TimeSpan), "00:01:00", "3650.00:00:00")]
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(30);

    /// <summary>Header that names a chat completions conversation, whose session later requests reuse.</summary>
    [Required, RegularExpression("^[A-Za-z0-9-]{1,64}$")]
    public string ConversationHeader { get; set; } = "X-KvCache-Conversation";
}
