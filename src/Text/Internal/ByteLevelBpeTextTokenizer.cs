using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace KvCache.Text.Internal;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> byte-level BPE (GPT-2, Llama 3, Qwen families) through
/// Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/> with <see cref="BpeOptions.ByteLevel"/>: the json's vocabulary
/// and merges and its pre-tokenizer regex; its added tokens are split out first (leftmost, longest), as Hugging Face does.
/// </summary>
/// <remarks>
/// Pre-tokenizers understood: <c>ByteLevel</c> with <c>use_regex</c> (GPT-2's pattern), and a <c>Sequence</c> of a
/// regex <c>Split</c> then <c>ByteLevel</c> without regex (Llama 3, Qwen). .NET's regex classes match UTF-16 code
/// units, so a letter or digit outside the Basic Multilingual Plane (e.g. mathematical alphanumerics) is split as a
/// symbol; emoji and every BMP script pre-tokenize as in Hugging Face.
/// </remarks>
internal sealed class ByteLevelBpeTextTokenizer : TextTokenizer
{
    /// <summary>GPT-2's pre-tokenizer pattern (Hugging Face ByteLevel with use_regex).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly BpeTokenizer _bpe;
    private readonly bool _nfc;

    private ByteLevelBpeTextTokenizer(BpeTokenizer bpe, bool nfc, byte[][] bytes, IReadOnlyDictionary<string, int> specials)
        : base(BpeKind, bytes, specials)
    {
        _bpe = bpe;
        _nfc = nfc;
    }

    public static ByteLevelBpeTextTokenizer Load(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = document.RootElement;
        var model = root.GetProperty("model");
        if (model.GetProperty("type").GetString() != "BPE")
        {
            throw new NotSupportedException($"{path}: model type '{model.GetProperty("type").GetString()}' is not supported; only byte-level BPE is.");
        }

        var pattern = PreTokenizerPattern(path, root);
        var nfc = Normalizer(path, root);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in model.GetProperty("vocab").EnumerateObject())
        {
            vocab[entry.Name] = entry.Value.GetInt32();
        }

        var merges = new List<string>();
        foreach (var merge in model.GetProperty("merges").EnumerateArray())
        {
            // Older files write "a b", newer ones ["a", "b"].
            merges.Add(merge.ValueKind == JsonValueKind.Array ? $"{merge[0].GetString()} {merge[1].GetString()}" : merge.GetString()!);
        }

        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var special = new HashSet<int>();
        if (root.TryGetProperty("added_tokens", out var tokens))
        {
            foreach (var token in tokens.EnumerateArray())
            {
                var id = token.GetProperty("id").GetInt32();
                added[token.GetProperty("content").GetString()!] = id;
                if (token.TryGetProperty("special", out var s) && s.GetBoolean())
                {
                    special.Add(id);
                }
            }
        }

        var regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        // Added tokens are split out before the library sees a text (PromptEncoder), so it gets none.
        var bpe = BpeTokenizer.Create(new BpeOptions(vocab.Where(v => !added.ContainsKey(v.Key)))
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(regex, specialTokens: null),
        });

        var size = Math.Max(vocab.Values.DefaultIfEmpty(-1).Max(), added.Values.DefaultIfEmpty(-1).Max()) + 1;
        var bytes = new byte[size][];
        var decode = UnicodeToBytes();
        foreach (var (piece, id) in vocab)
        {
            bytes[id] = ToBytes(piece, decode);
        }

        foreach (var (content, id) in added)
        {
            bytes[id] = special.Contains(id) ? [] : Encoding.UTF8.GetBytes(content);
        }

        for (var i = 0; i < bytes.Length; i++)
        {
            bytes[i] ??= [];
        }

        return new ByteLevelBpeTextTokenizer(bpe, nfc, bytes, added);
    }

    public override void Encode(string text, bool atStart, List<int> ids)
    {
        if (text.Length == 0)
        {
            return;
        }

        if (_nfc)
        {
            text = text.Normalize(NormalizationForm.FormC);
        }

        ids.AddRange(_bpe.EncodeToIds(text));
    }

    private static string PreTokenizerPattern(string path, JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object)
        {
            throw new NotSupportedException($"{path}: no pre_tokenizer; only byte-level BPE is supported.");
        }

        switch (pre.GetProperty("type").GetString())
        {
            case "ByteLevel" when !pre.TryGetProperty("add_prefix_space", out var prefix) || !prefix.GetBoolean():
                return Gpt2Pattern;
            case "Sequence":
                var steps = pre.GetProperty("pretokenizers").EnumerateArray().ToArray();
                if (steps is [var split, var byteLevel]
                    && split.GetProperty("type").GetString() == "Split"
                    && split.GetProperty("pattern").TryGetProperty("Regex", out var regex)
                    && byteLevel.GetProperty("type").GetString() == "ByteLevel"
                    && byteLevel.TryGetProperty("use_regex", out var useRegex) && !useRegex.GetBoolean())
                {
                    return regex.GetString()!;
                }

                break;
        }

        throw new NotSupportedException($"{path}: pre_tokenizer {pre.GetRawText()} is not supported; byte-level BPE with GPT-2's regex, or a regex Split then ByteLevel, is.");
    }

    private static bool Normalizer(string path, JsonElement root)
    {
        if (!root.TryGetProperty("normalizer", out var normalizer) || normalizer.ValueKind == JsonValueKind.Null)
        {
            return false;
        }

        return normalizer.GetProperty("type").GetString() == "NFC"
            ? true
            : throw new NotSupportedException($"{path}: normalizer {normalizer.GetRawText()} is not supported (none or NFC are).");
    }

    /// <summary>The inverse of GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for U+0100 on.</summary>
    private static Dictionary<char, byte> UnicodeToBytes()
    {
        var map = new Dictionary<char, byte>(256);
        var next = 0;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= '¡' and <= '¬' or >= '®' and <= 'ÿ';
            map[printable ? (char)b : (char)(256 + next++)] = (byte)b;
        }

        return map;
    }

    private static byte[] ToBytes(string piece, Dictionary<char, byte> decode)
    {
        var bytes = new byte[piece.Length];
        for (var i = 0; i < piece.Length; i++)
        {
            if (!decode.TryGetValue(piece[i], out bytes[i]))
            {
                // Not a byte-level symbol (a merged special written into the vocabulary): its own UTF-8.
                return Encoding.UTF8.GetBytes(piece);
            }
        }

        return bytes;
    }
}
