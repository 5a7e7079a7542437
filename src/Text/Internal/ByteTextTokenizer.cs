using System.Text;

namespace KvCache.Text.Internal;

/// <summary>Byte-level models (vocabulary 256): a token id is a byte of the UTF-8 text.</summary>
internal sealed class ByteTextTokenizer : TextTokenizer
{
    public ByteTextTokenizer()
        : base(ByteKind, [.. Enumerable.Range(0, 256).Select(b => new[] { (byte)b })], new Dictionary<string, int>())
    {
    }

    public override void Encode(string text, bool atStart, List<int> ids)
    {
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            ids.Add(b);
        }
    }
}
