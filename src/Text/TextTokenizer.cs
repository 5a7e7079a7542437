using System.Text;

namespace KvCache.Text;

/// <summary>
/// A model's tokenizer: text to token ids (through <c>Microsoft.ML.Tokenizers</c>, or bytes for byte-level models)
/// and each token id back to the bytes it stands for in running text.
/// </summary>
/// <remarks>
/// Token bytes rather than strings: a token may hold part of a UTF-8 character (byte fallback, byte-level BPE), so
/// text is assembled from bytes by an <see cref="IncrementalDetokenizer"/>. Special tokens (BOS, EOS, chat markers)
/// have no bytes: they never appear in decoded text, as with Hugging Face's <c>skip_special_tokens</c>.
/// </remarks>
public abstract class TextTokenizer
{
    /// <summary>Kind reported by ListModels for SentencePiece <c>tokenizer.model</c> files.</summary>
    public const string SentencePieceKind = "sentencepiece";

    /// <summary>Kind reported for Hugging Face <c>tokenizer.json</c> byte-level BPE.</summary>
    public const string BpeKind = "bpe";

    /// <summary>Kind reported for byte-level models (vocabulary 256, token id = byte value).</summary>
    public const string ByteKind = "byte";

    private readonly byte[][] _bytes;
    private readonly Dictionary<string, int> _special;

    private protected TextTokenizer(string kind, byte[][] tokenBytes, IReadOnlyDictionary<string, int> specialTokens)
    {
        Kind = kind;
        _bytes = tokenBytes;
        _special = new Dictionary<string, int>(specialTokens, StringComparer.Ordinal);
        SpecialIds = [.. _special.Values.Order()];
    }

    /// <summary>"sentencepiece", "bpe" or "byte".</summary>
    public string Kind { get; }

    /// <summary>Ids the tokenizer knows (token bytes are defined below it).</summary>
    public int Count => _bytes.Length;

    /// <summary>Special tokens by their text: recognised in template text and in Append's <c>text</c>, never in message content.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _special;

    /// <summary>Ids of the special tokens, ascending.</summary>
    public IReadOnlyList<int> SpecialIds { get; }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="ids"/> as plain text: no BOS, no EOS,
    /// special tokens written in it tokenized as the characters they are made of.</summary>
    /// <param name="atStart">Whether the text begins a tokenization (SentencePiece adds its dummy prefix only
    /// there), rather than continuing one after a special token.</param>
    public abstract void Encode(string text, bool atStart, List<int> ids);

    /// <summary>The ids of <paramref name="text"/>, special tokens written in it recognised (as Hugging Face
    /// tokenizers do).</summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>();
        Internal.PromptEncoder.Encode(this, [PromptPart.Template(text)], atStart: true, ids);
        return [.. ids];
    }

    /// <summary>Appends what a tokenization that opens with a special token starts with (SentencePiece's dummy
    /// prefix piece); nothing for most tokenizers.</summary>
    internal virtual void EncodeDummyPrefix(List<int> ids)
    {
    }

    /// <summary>Bytes of a token in running text; empty for special tokens and ids the tokenizer does not have.</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => (uint)id < (uint)_bytes.Length ? _bytes[id] : [];

    /// <summary>Id of a special token written as <paramref name="text"/>, if the tokenizer has it.</summary>
    public int? SpecialTokenId(string text) => _special.TryGetValue(text, out var id) ? id : null;

    /// <summary>The text of <paramref name="ids"/> in running text (bytes concatenated, invalid UTF-8 as U+FFFD).</summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            bytes.AddRange(TokenBytes(id));
        }

        return Encoding.UTF8.GetString([.. bytes]);
    }
}
