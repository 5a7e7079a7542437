using System.Text;

namespace KvCache.Text;

/// <summary>
/// Text of a token stream, one token at a time, never broken UTF-8: the bytes of a character split across tokens
/// are held back until the token that completes it (a byte sequence that can never complete comes out as U+FFFD).
/// </summary>
/// <remarks>One per Decode; reuses its buffers, so a token costs only the string it returns.</remarks>
public sealed class IncrementalDetokenizer(TextTokenizer tokenizer)
{
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];

    /// <summary>The text <paramref name="tokenId"/> completes; empty while a character is still partial.</summary>
    public string Push(int tokenId)
    {
        var bytes = tokenizer.TokenBytes(tokenId);
        if (bytes.IsEmpty)
        {
            return "";
        }

        var needed = _decoder.GetCharCount(bytes, flush: false);
        if (needed > _chars.Length)
        {
            _chars = new char[Math.Max(needed, _chars.Length * 2)];
        }

        var count = _decoder.GetChars(bytes, _chars, flush: false);
        return count == 0 ? "" : new string(_chars, 0, count);
    }
}
