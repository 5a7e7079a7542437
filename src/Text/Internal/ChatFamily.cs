namespace KvCache.Text.Internal;

/// <summary>One chat template family: how it begins, renders each message, and prompts the assistant.</summary>
/// <remarks>Each family mirrors the reference Jinja template its comment names (the forms Hugging Face model cards
/// ship); KvCache.Text.Tests renders those templates with python3-jinja2 and compares.</remarks>
internal abstract class ChatFamily(string name, string bos, string eos)
{
    public static readonly string[] Names = ["chatml", "llama3", "llama2", "mistral", "gemma", "phi3", "zephyr"];

    public string Name { get; } = name;

    protected string Bos { get; } = bos;

    protected string Eos { get; } = eos;

    public virtual string? EndOfTurn => null;

    public abstract string AssistantSuffix { get; }

    /// <summary>Roles the family renders.</summary>
    protected virtual IReadOnlyList<string> Roles => ["system", "user", "assistant"];

    public static ChatFamily? Create(string name, string bos, string eos) => name.ToLowerInvariant() switch
    {
        "chatml" => new ChatMl(bos, eos),
        "llama3" => new Llama3(bos, eos),
        "llama2" => new Llama2(bos, eos),
        "mistral" => new Mistral(bos, eos),
        "gemma" => new Gemma(bos, eos),
        "phi3" => new Phi3(bos, eos),
        "zephyr" => new Zephyr(bos, eos),
        _ => null,
    };

    /// <summary>llama.cpp's detection order: the most specific markers first.</summary>
    public static ChatFamily? Detect(string template, string bos, string eos)
    {
        bool Has(string s) => template.Contains(s, StringComparison.Ordinal);
        var name = Has("<|im_start|>") ? "chatml"
            : Has("<|start_header_id|>") && Has("<|end_header_id|>") ? "llama3"
            : Has("<|assistant|>") && Has("<|end|>") ? "phi3"
            : Has("<|user|>") ? "zephyr"
            : Has("<start_of_turn>") ? "gemma"
            : Has("[INST]") ? (Has("<<SYS>>") ? "llama2" : "mistral")
            : null;
        return name is null ? null : Create(name, bos, eos);
    }

    public virtual void Validate(IReadOnlyList<ChatMessage> messages, bool continuation)
    {
        if (messages.Count == 0)
        {
            throw new ChatTemplateException("messages is empty.");
        }

        for (var i = 0; i < messages.Count; i++)
        {
            if (!Roles.Contains(messages[i].Role))
            {
                throw new ChatTemplateException($"messages[{i}] has role '{Quote(messages[i].Role)}'; the {Name} template takes {string.Join(", ", Roles)}.");
            }
        }
    }

    public virtual void Begin(List<PromptPart> parts)
    {
    }

    public virtual void Messages(IReadOnlyList<ChatMessage> messages, bool continuation, List<PromptPart> parts)
    {
        for (var i = 0; i < messages.Count; i++)
        {
            Message(messages[i], first: i == 0 && !continuation, parts);
        }
    }

    protected virtual void Message(ChatMessage message, bool first, List<PromptPart> parts)
    {
    }

    public abstract void GenerationPrompt(List<PromptPart> parts);

    /// <summary>Jinja's <c>trim</c> and Python's <c>str.strip()</c>.</summary>
    protected static string Strip(string s) => s.Trim();

    protected static void Add(List<PromptPart> parts, string template, string content, string after)
    {
        parts.Add(PromptPart.Template(template));
        parts.Add(PromptPart.Content(content));
        parts.Add(PromptPart.Template(after));
    }

    /// <summary>User and assistant turns alternating from a user turn (after an optional system message when
    /// <paramref name="system"/>), as the [INST] and Gemma templates demand.</summary>
    protected void ValidateAlternation(IReadOnlyList<ChatMessage> messages, bool continuation, bool system)
    {
        var start = system && !continuation && messages[0].Role == "system" ? 1 : 0;
        for (var i = start; i < messages.Count; i++)
        {
            var expected = (i - start) % 2 == 0 ? "user" : "assistant";
            if (messages[i].Role != expected)
            {
                throw new ChatTemplateException(messages[i].Role == "system"
                    ? $"messages[{i}]: the {Name} template takes a system message only as the conversation's first."
                    : $"messages[{i}] is '{messages[i].Role}': the {Name} template needs user and assistant turns alternating from a user turn{(continuation ? " after the assistant's reply" : "")}.");
            }
        }
    }

    private static string Quote(string s) => s.Length <= 32 ? s : s[..32] + "…";

    /// <summary><c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c>; prompt <c>&lt;|im_start|&gt;assistant\n</c>.</summary>
    private sealed class ChatMl(string bos, string eos) : ChatFamily("chatml", bos, eos)
    {
        public override string? EndOfTurn => "<|im_end|>";

        public override string AssistantSuffix => "<|im_end|>\n";

        protected override IReadOnlyList<string> Roles => ["system", "user", "assistant", "tool"];

        protected override void Message(ChatMessage m, bool first, List<PromptPart> parts) =>
            Add(parts, $"<|im_start|>{m.Role}\n", m.Content, "<|im_end|>\n");

        public override void GenerationPrompt(List<PromptPart> parts) => parts.Add(PromptPart.Template("<|im_start|>assistant\n"));
    }

    /// <summary>Meta Llama 3 Instruct: BOS, then <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content|trim}&lt;|eot_id|&gt;</c>.</summary>
    private sealed class Llama3(string bos, string eos) : ChatFamily("llama3", bos, eos)
    {
        public override string? EndOfTurn => "<|eot_id|>";

        public override string AssistantSuffix => "<|eot_id|>";

        protected override IReadOnlyList<string> Roles => ["system", "user", "assistant", "tool"];

        protected override void Message(ChatMessage m, bool first, List<PromptPart> parts) =>
            Add(parts, $"{(first ? Bos : "")}<|start_header_id|>{m.Role}<|end_header_id|>\n\n", Strip(m.Content), "<|eot_id|>");

        public override void GenerationPrompt(List<PromptPart> parts) => parts.Add(PromptPart.Template("<|start_header_id|>assistant<|end_header_id|>\n\n"));
    }

    /// <summary>Llama 2 chat: <c>{bos}[INST] {content} [/INST]</c>, the system message folded into the first user
    /// turn as <c>&lt;&lt;SYS&gt;&gt;</c>; an assistant turn is <c> {content} {eos}</c>. No generation prompt.</summary>
    private sealed class Llama2(string bos, string eos) : ChatFamily("llama2", bos, eos)
    {
        public override string AssistantSuffix => " " + Eos;

        public override void Validate(IReadOnlyList<ChatMessage> messages, bool continuation)
        {
            base.Validate(messages, continuation);
            ValidateAlternation(messages, continuation, system: true);
        }

        public override void Messages(IReadOnlyList<ChatMessage> messages, bool continuation, List<PromptPart> parts)
        {
            var system = !continuation && messages[0].Role == "system" ? messages[0].Content : null;
            for (var i = system is null ? 0 : 1; i < messages.Count; i++)
            {
                var m = messages[i];
                if (m.Role == "assistant")
                {
                    Add(parts, " ", Strip(m.Content), " " + Eos);
                }
                else if (system is not null)
                {
                    // strip() runs over the whole folded content: its start is the <<SYS>> marker.
                    parts.Add(PromptPart.Template($"{Bos}[INST] <<SYS>>\n"));
                    parts.Add(PromptPart.Content(system));
                    Add(parts, "\n<</SYS>>\n\n", m.Content.TrimEnd(), " [/INST]");
                    system = null;
                }
                else
                {
                    Add(parts, $"{Bos}[INST] ", Strip(m.Content), " [/INST]");
                }
            }
        }

        public override void GenerationPrompt(List<PromptPart> parts)
        {
        }
    }

    /// <summary>Mistral Instruct v0.1/v0.2: <c>{bos}[INST] {content} [/INST]{reply}{eos}</c>; no system role.</summary>
    private sealed class Mistral(string bos, string eos) : ChatFamily("mistral", bos, eos)
    {
        public override string AssistantSuffix => Eos;

        protected override IReadOnlyList<string> Roles => ["user", "assistant"];

        public override void Validate(IReadOnlyList<ChatMessage> messages, bool continuation)
        {
            base.Validate(messages, continuation);
            ValidateAlternation(messages, continuation, system: false);
        }

        public override void Begin(List<PromptPart> parts) => parts.Add(PromptPart.Template(Bos));

        protected override void Message(ChatMessage m, bool first, List<PromptPart> parts)
        {
            if (m.Role == "user")
            {
                Add(parts, "[INST] ", m.Content, " [/INST]");
            }
            else
            {
                Add(parts, "", m.Content, Eos);
            }
        }

        public override void GenerationPrompt(List<PromptPart> parts)
        {
        }
    }

    /// <summary>Gemma: <c>{bos}</c>, then <c>&lt;start_of_turn&gt;{user|model}\n{content|trim}&lt;end_of_turn&gt;\n</c>; no system role.</summary>
    private sealed class Gemma(string bos, string eos) : ChatFamily("gemma", bos, eos)
    {
        public override string? EndOfTurn => "<end_of_turn>";

        public override string AssistantSuffix => "<end_of_turn>\n";

        protected override IReadOnlyList<string> Roles => ["user", "assistant"];

        public override void Validate(IReadOnlyList<ChatMessage> messages, bool continuation)
        {
            base.Validate(messages, continuation);
            ValidateAlternation(messages, continuation, system: false);
        }

        public override void Begin(List<PromptPart> parts) => parts.Add(PromptPart.Template(Bos));

        protected override void Message(ChatMessage m, bool first, List<PromptPart> parts) =>
            Add(parts, $"<start_of_turn>{(m.Role == "assistant" ? "model" : m.Role)}\n", Strip(m.Content), "<end_of_turn>\n");

        public override void GenerationPrompt(List<PromptPart> parts) => parts.Add(PromptPart.Template("<start_of_turn>model\n"));
    }

    /// <summary>Phi-3: <c>&lt;|{role}|&gt;\n{content}&lt;|end|&gt;\n</c>; prompt <c>&lt;|assistant|&gt;\n</c>.</summary>
    private sealed class Phi3(string bos, string eos) : ChatFamily("phi3", bos, eos)
    {
        public override string? EndOfTurn => "<|end|>";

        public override string AssistantSuffix => "<|end|>\n";

        protected override void Message(ChatMessage m, bool first, List<PromptPart> parts) =>
            Add(parts, $"<|{m.Role}|>\n", m.Content, "<|end|>\n");

        public override void GenerationPrompt(List<PromptPart> parts) => parts.Add(PromptPart.Template("<|assistant|>\n"));
    }

    /// <summary>Zephyr: <c>&lt;|{role}|&gt;\n{content}{eos}\n</c>; prompt <c>&lt;|assistant|&gt;\n</c>.</summary>
    private sealed class Zephyr(string bos, string eos) : ChatFamily("zephyr", bos, eos)
    {
        public override string AssistantSuffix => Eos + "\n";

        protected override void Message(ChatMessage m, bool first, List<PromptPart> parts) =>
            Add(parts, $"<|{m.Role}|>\n", m.Content, Eos + "\n");

        public override void GenerationPrompt(List<PromptPart> parts) => parts.Add(PromptPart.Template("<|assistant|>\n"));
    }
}
