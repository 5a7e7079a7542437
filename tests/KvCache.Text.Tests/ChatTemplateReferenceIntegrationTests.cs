using System.Text.Json;
using System.Text.Json.Nodes;

namespace KvCache.Text.Tests;

/// <summary>
/// The C# chat template families against python3-jinja2 rendering the families' own template strings
/// (Fixtures/chat_templates.json, from Hugging Face tokenizer_config.json files) on the same conversations, as
/// transformers renders them (render_templates.py).
/// </summary>
public sealed class ChatTemplateReferenceIntegrationTests
{
    private const string Bos = "<s>";
    private const string Eos = "</s>";

    private static readonly ChatMessage[][] Conversations =
    [
        [new("user", "Hello!")],
        [new("system", "You are terse."), new("user", "What is a KV cache?")],
        [new("user", "Hi"), new("assistant", "Hello, how can I help?"), new("user", "Tell me a joke.")],
        [new("system", "Be kind."), new("user", "  padded question \n"), new("assistant", "An answer."), new("user", "Thanks — ¿y ahora? 👋")],
        [new("user", "multi\nline\n\ncontent"), new("assistant", "ok"), new("user", "again"), new("assistant", "sure"), new("user", "last")],
        [new("assistant", "I speak first")],
        [new("user", "a"), new("user", "b")],
        [new("system", "s"), new("user", "u"), new("tool", "{\"result\": 4}")],
        [new("user", "u"), new("system", "late system")],
    ];

    /// <summary>Conversations (index into <see cref="Conversations"/>) the service refuses on purpose where the Jinja
    /// template renders something: it drops a tool message or a late system message without a word, or writes a
    /// system turn Gemma has no role for. A caller learns of it (INVALID_ARGUMENT) instead of losing the message.</summary>
    private static readonly HashSet<(string Family, int Conversation)> RefusedOnPurpose =
        [("llama2", 7), ("llama2", 8), ("gemma", 8), ("phi3", 7), ("zephyr", 7)];

    [Fact]
    public async Task Every_family_renders_as_jinja2_renders_its_template()
    {
        var templates = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(Fixtures.Path_("chat_templates.json")))!;
        Assert.Equal(ChatTemplate.Families.Order(), templates.Keys.Order());
        var cases = new JsonArray();
        var expected = new List<(string Family, int Index)>();
        foreach (var (family, template) in templates)
        {
            for (var c = 0; c < Conversations.Length; c++)
            {
                cases.Add(Case(template, Conversations[c]));
                expected.Add((family, c));
            }
        }

        var rendered = await RenderAsync(cases);
        var failures = new List<string>();
        for (var i = 0; i < expected.Count; i++)
        {
            var (family, index) = expected[i];
            var messages = Conversations[index];
            var template = ChatTemplate.Detect(templates[family], Bos, Eos);
            Assert.Equal(family, template?.Family);
            string? ours;
            try
            {
                ours = Concat(template!.Render(messages));
            }
            catch (ChatTemplateException)
            {
                ours = null;
            }

            var theirs = rendered[i] is JsonObject || RefusedOnPurpose.Contains((family, index)) ? null : rendered[i]!.GetValue<string>();
            if (ours != theirs)
            {
                failures.Add($"{family} {JsonSerializer.Serialize(messages)}:\n  ours   {JsonSerializer.Serialize(ours)}\n  jinja2 {JsonSerializer.Serialize(theirs)}");
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>A later turn rendered after the assistant's reply completes the whole conversation's rendering.</summary>
    [Fact]
    public async Task A_continuation_after_the_reply_completes_the_whole_rendering()
    {
        var templates = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(Fixtures.Path_("chat_templates.json")))!;
        ChatMessage[] first = [new("user", "Hi there")];
        const string reply = "Hello, how can I help?";
        ChatMessage[] next = [new("user", "Tell me a joke.")];
        var cases = new JsonArray();
        foreach (var template in templates.Values)
        {
            cases.Add(Case(template, [.. first, new("assistant", reply), .. next]));
        }

        var rendered = await RenderAsync(cases);
        var i = 0;
        foreach (var (family, text) in templates)
        {
            var template = ChatTemplate.Detect(text, Bos, Eos)!;
            // Llama 2 writes a space between [/INST] and the reply: the model generates it as the reply's first piece.
            var generated = family == "llama2" ? " " + reply : reply;
            var live = Concat(template.Render(first)) + generated + Concat(template.RenderContinuation(template.AssistantSuffix, next));
            Assert.Equal(rendered[i++]!.GetValue<string>(), live);
        }
    }

    private static JsonObject Case(string template, ChatMessage[] messages) => new()
    {
        ["template"] = template,
        ["bos_token"] = Bos,
        ["eos_token"] = Eos,
        ["add_generation_prompt"] = true,
        ["messages"] = new JsonArray([.. messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content })]),
    };

    private static async Task<JsonArray> RenderAsync(JsonArray cases)
    {
        var input = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(input, cases.ToJsonString());
            var output = await Fixtures.RunPythonAsync("render_templates.py", input);
            return JsonNode.Parse(output.GetRawText())!.AsArray();
        }
        finally
        {
            File.Delete(input);
        }
    }

    private static string Concat(IReadOnlyList<PromptPart> parts) => string.Concat(parts.Select(p => p.Text));
}
