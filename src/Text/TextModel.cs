using System.Text.Json;
using KvCache.Text.Internal;

namespace KvCache.Text;

/// <summary>
/// What a model directory says about text: its tokenizer, its chat template, its BOS and end-of-sequence tokens.
/// </summary>
/// <remarks>
/// <para>Tokenizer: <c>tokenizer.model</c> (SentencePiece), else <c>tokenizer.json</c> (Hugging Face byte-level BPE),
/// else, for a vocabulary of exactly 256 ids, bytes (token id = byte value). Special tokens come from
/// <c>tokenizer_config.json</c>'s <c>added_tokens_decoder</c> and <c>tokenizer.json</c>'s <c>added_tokens</c>.</para>
/// <para>End-of-sequence ids, Decode's default stop tokens: <c>generation_config.json</c>'s and <c>config.json</c>'s
/// <c>eos_token_id</c> (a number or a list), <c>tokenizer_config.json</c>'s <c>eos_token</c>, and the chat template's
/// end-of-turn token (e.g. <c>&lt;|im_end|&gt;</c>), as llama.cpp stops on it.</para>
/// </remarks>
public sealed class TextModel
{
    private TextModel(TextTokenizer? tokenizer, ChatTemplate? template, int? bosTokenId, int[] eosTokenIds)
    {
        Tokenizer = tokenizer;
        Template = template;
        BosTokenId = bosTokenId;
        EosTokenIds = eosTokenIds;
    }

    /// <summary>A model that takes token ids only.</summary>
    public static TextModel None { get; } = new(null, null, null, []);

    public TextTokenizer? Tokenizer { get; }

    public ChatTemplate? Template { get; }

    public int? BosTokenId { get; }

    /// <summary>End-of-sequence ids (empty without a tokenizer: such a model keeps generating until told to stop).</summary>
    public IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>Tokens of plain text (no BOS, no template; special tokens written in it recognised).</summary>
    /// <exception cref="InvalidOperationException">The model has no tokenizer.</exception>
    public int[] EncodeText(string text) => (Tokenizer ?? throw new InvalidOperationException("The model has no tokenizer.")).Encode(text);

    /// <summary>
    /// Tokens that append <paramref name="messages"/> to a session. An empty session (<paramref name="lastToken"/>
    /// null) gets the whole rendering: the template's beginning (its BOS, if it writes one), the messages, the
    /// generation prompt. A session that holds a conversation is taken to end inside the assistant's reply: it gets
    /// the rest of the assistant's turn — <see cref="ChatTemplate.AssistantSuffix"/>, less everything up to and
    /// including the end-of-turn or EOS token it ends with when Decode stopped on one — then the new messages, then
    /// the generation prompt.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model has no tokenizer or no chat template.</exception>
    /// <exception cref="ChatTemplateException">The template does not accept the messages.</exception>
    public int[] EncodeMessages(IReadOnlyList<ChatMessage> messages, int? lastToken)
    {
        var tokenizer = Tokenizer ?? throw new InvalidOperationException("The model has no tokenizer.");
        var template = Template ?? throw new InvalidOperationException("The model has no chat template.");
        var ids = new List<int>();
        if (lastToken is not { } last)
        {
            Internal.PromptEncoder.Encode(tokenizer, template.Render(messages), atStart: true, ids);
            return [.. ids];
        }

        var suffix = template.AssistantSuffix;
        if (EosTokenIds.Contains(last) && tokenizer.SpecialTokens.FirstOrDefault(s => s.Value == last).Key is { } endText
            && suffix.IndexOf(endText, StringComparison.Ordinal) is var at and >= 0)
        {
            suffix = suffix[(at + endText.Length)..];
        }

        Internal.PromptEncoder.Encode(tokenizer, template.RenderContinuation(suffix, messages), atStart: false, ids);
        return [.. ids];
    }

    /// <summary>Reads the text files of <paramref name="directory"/>.</summary>
    /// <param name="vocabSize">The model's vocabulary: token ids a tokenizer gives must be below it.</param>
    /// <exception cref="InvalidDataException">A file is malformed, a tokenizer is not supported, or it does not fit the vocabulary.</exception>
    public static TextModel Load(string directory, int vocabSize, TextModelOptions? options = null)
    {
        options ??= new TextModelOptions();
        try
        {
            return LoadCore(directory, vocabSize, options);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException or KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"{directory}: {ex.Message} (Models:Text:<model>:Tokenizer=none serves the model with token ids only).", ex);
        }
    }

    private static TextModel LoadCore(string directory, int vocabSize, TextModelOptions options)
    {
        var config = ReadJson(Path.Combine(directory, "tokenizer_config.json"));
        var specials = AddedTokens(config);
        TextTokenizer? tokenizer = options.Tokenizer.ToLowerInvariant() switch
        {
            "none" => null,
            "byte" => vocabSize >= 256 ? new ByteTextTokenizer() : throw new InvalidDataException($"The byte tokenizer needs a vocabulary of at least 256, the model has {vocabSize}."),
            "auto" => AutoTokenizer(directory, vocabSize, specials),
            var other => throw new InvalidDataException($"Unknown tokenizer '{other}': auto, none or byte."),
        };
        if (tokenizer is null)
        {
            return None;
        }

        if (tokenizer.Count > vocabSize && tokenizer.Kind != TextTokenizer.ByteKind)
        {
            throw new InvalidDataException($"The tokenizer has {tokenizer.Count} ids, the model's vocabulary only {vocabSize}.");
        }

        int? TokenId(JsonElement? value) => TokenText(value) is { Length: > 0 } text ? tokenizer.SpecialTokenId(text) : null;

        var bos = TokenId(Property(config, "bos_token"));
        var eos = new SortedSet<int>();
        AddIds(eos, Property(ReadJson(Path.Combine(directory, "generation_config.json")), "eos_token_id"));
        AddIds(eos, Property(ReadJson(Path.Combine(directory, "config.json")), "eos_token_id"));
        if (TokenId(Property(config, "eos_token")) is { } eosToken)
        {
            eos.Add(eosToken);
        }

        var template = TemplateFor(options, config, TokenText(Property(config, "bos_token")), TokenText(Property(config, "eos_token")));
        if (template?.EndOfTurn is { } endOfTurn && tokenizer.SpecialTokenId(endOfTurn) is { } endOfTurnId)
        {
            eos.Add(endOfTurnId);
        }

        eos.RemoveWhere(id => (uint)id >= (uint)vocabSize);
        return new TextModel(tokenizer, template, bos, [.. eos]);
    }

    private static TextTokenizer? AutoTokenizer(string directory, int vocabSize, IReadOnlyDictionary<string, int> specials)
    {
        var sentencePiece = Path.Combine(directory, "tokenizer.model");
        if (File.Exists(sentencePiece))
        {
            return SentencePieceTextTokenizer.Load(sentencePiece, specials);
        }

        var json = Path.Combine(directory, "tokenizer.json");
        if (File.Exists(json))
        {
            return ByteLevelBpeTextTokenizer.Load(json);
        }

        return vocabSize == 256 ? new ByteTextTokenizer() : null;
    }

    private static ChatTemplate? TemplateFor(TextModelOptions options, JsonElement? config, string bos, string eos)
    {
        if (!string.IsNullOrEmpty(options.ChatTemplate))
        {
            return options.ChatTemplate.Equals("none", StringComparison.OrdinalIgnoreCase)
                ? null
                : ChatTemplate.ForFamily(options.ChatTemplate, bos, eos);
        }

        var text = Property(config, "chat_template") switch
        {
            { ValueKind: JsonValueKind.String } s => s.GetString(),
            // A list of named templates: the one named "default".
            { ValueKind: JsonValueKind.Array } list => list.EnumerateArray()
                .Where(t => t.TryGetProperty("name", out var n) && n.GetString() == "default")
                .Select(t => t.GetProperty("template").GetString())
                .FirstOrDefault(),
            _ => null,
        };
        return text is null ? null : ChatTemplate.Detect(text, bos, eos)
            ?? throw new NotSupportedException("tokenizer_config.json's chat_template is of no known family; set Models:Text:<model>:ChatTemplate to one of " + string.Join(", ", ChatTemplate.Families));
    }

    /// <summary>A tokenizer_config.json token: a string, or an object with its <c>content</c>.</summary>
    private static string TokenText(JsonElement? value) => value switch
    {
        { ValueKind: JsonValueKind.String } s => s.GetString()!,
        { ValueKind: JsonValueKind.Object } o when o.TryGetProperty("content", out var c) => c.GetString()!,
        _ => "",
    };

    private static Dictionary<string, int> AddedTokens(JsonElement? config)
    {
        var tokens = new Dictionary<string, int>(StringComparer.Ordinal);
        if (Property(config, "added_tokens_decoder") is { ValueKind: JsonValueKind.Object } added)
        {
            foreach (var entry in added.EnumerateObject())
            {
                if (entry.Value.TryGetProperty("special", out var special) && special.GetBoolean())
                {
                    tokens[entry.Value.GetProperty("content").GetString()!] = int.Parse(entry.Name, System.Globalization.CultureInfo.InvariantCulture);
                }
            }
        }

        return tokens;
    }

    private static void AddIds(SortedSet<int> ids, JsonElement? value)
    {
        switch (value)
        {
            case { ValueKind: JsonValueKind.Number } n:
                ids.Add(n.GetInt32());
                break;
            case { ValueKind: JsonValueKind.Array } list:
                foreach (var item in list.EnumerateArray())
                {
                    ids.Add(item.GetInt32());
                }

                break;
        }
    }

    private static JsonElement? Property(JsonElement? element, string name) =>
        element is { ValueKind: JsonValueKind.Object } e && e.TryGetProperty(name, out var value) ? value : null;

    private static JsonElement? ReadJson(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        using var document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        return document.RootElement.Clone();
    }
}
