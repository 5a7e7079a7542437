namespace KvCache.Text.Internal;

/// <summary>
/// Tokenizes rendered prompt parts as one text: special tokens written in template parts become their ids, runs of
/// text between them (template and content alike) are tokenized together, and only the text's very start gets a
/// SentencePiece dummy prefix.
/// </summary>
internal static class PromptEncoder
{
    public static void Encode(TextTokenizer tokenizer, IReadOnlyList<PromptPart> parts, bool atStart, List<int> ids)
    {
        var run = new System.Text.StringBuilder();
        var runAtStart = atStart;
        foreach (var part in parts)
        {
            if (part.IsContent)
            {
                run.Append(part.Text);
                continue;
            }

            var text = part.Text;
            var from = 0;
            while (FindSpecial(tokenizer, text, from) is var (at, length, id) && at >= 0)
            {
                run.Append(text, from, at - from);
                Flush(tokenizer, run, ref runAtStart, ids, beforeSpecial: true);
                ids.Add(id);
                from = at + length;
            }

            run.Append(text, from, text.Length - from);
        }

        Flush(tokenizer, run, ref runAtStart, ids, beforeSpecial: false);
    }

    private static void Flush(TextTokenizer tokenizer, System.Text.StringBuilder run, ref bool atStart, List<int> ids, bool beforeSpecial)
    {
        if (run.Length > 0)
        {
            tokenizer.Encode(run.ToString(), atStart, ids);
            run.Clear();
        }
        else if (atStart && beforeSpecial)
        {
            // SentencePiece prefixes the whole text: a text that opens with a special token starts with the dummy
            // prefix's own piece (what spm_encode gives for "<|im_start|>…" with a user-defined marker).
            tokenizer.EncodeDummyPrefix(ids);
        }

        atStart = false;
    }

    /// <summary>The leftmost special token in <paramref name="text"/> from <paramref name="from"/>, longest first.</summary>
    private static (int At, int Length, int Id) FindSpecial(TextTokenizer tokenizer, string text, int from)
    {
        var best = (At: -1, Length: 0, Id: 0);
        foreach (var (special, id) in tokenizer.SpecialTokens)
        {
            var at = text.IndexOf(special, from, StringComparison.Ordinal);
            if (at >= 0 && (best.At < 0 || at < best.At || (at == best.At && special.Length > best.Length)))
            {
                best = (at, special.Length, id);
            }
        }

        return best;
    }
}
