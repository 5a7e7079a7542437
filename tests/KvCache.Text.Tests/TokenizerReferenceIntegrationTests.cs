using System.Text;
using System.Text.Json;

namespace KvCache.Text.Tests;

/// <summary>
/// The tokenizers against independent implementations on Fixtures/strings.json (1,200 strings: words, scripts,
/// emoji, whitespace runs, digits, code, chat markers): python3-sentencepiece for SentencePiece models trained by
/// spm_train (with byte fallback, and without, where unknown characters become &lt;unk&gt;), OpenAI's GPT-2 encoder
/// algorithm for byte-level BPE (tokenize_reference.py).
/// </summary>
public sealed class TokenizerReferenceIntegrationTests
{
    [Theory]
    [InlineData("spm-bpe", "sp")]
    [InlineData("spm-bpe-nobytes", "sp")]
    [InlineData("bpe", "bpe")]
    public async Task Tokenization_equals_the_reference_on_every_string(string model, string reference)
    {
        var strings = Fixtures.Strings();
        Assert.True(strings.Length >= 1000);
        var text = TextModel.Load(Fixtures.Path_(model), vocabSize: 4096);
        var tokenizer = text.Tokenizer!;
        var expected = await Fixtures.RunPythonAsync("tokenize_reference.py", reference, Fixtures.Path_(model), Fixtures.Path_("strings.json"));
        var ids = expected.GetProperty("ids");
        var decoded = expected.GetProperty("decoded");
        var failures = new List<string>();
        for (var i = 0; i < strings.Length; i++)
        {
            var want = ids[i].EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var got = tokenizer.Encode(strings[i]);
            if (!want.SequenceEqual(got))
            {
                failures.Add($"{JsonSerializer.Serialize(strings[i])}: want [{string.Join(",", want)}] got [{string.Join(",", got)}]");
                continue;
            }

            // Streaming the tokens gives the reference's decoding (SentencePiece drops its dummy prefix's space).
            var detokenizer = new IncrementalDetokenizer(tokenizer);
            var streamed = new StringBuilder();
            foreach (var id in got)
            {
                streamed.Append(detokenizer.Push(id));
            }

            var text_ = streamed.ToString();
            if (reference == "sp" && text_.StartsWith(' '))
            {
                text_ = text_[1..];
            }

            // The references write special tokens' text (SentencePiece's <unk> as " ⁇ "); streamed text leaves them out.
            var wantText = decoded[i].GetString()!.Replace(" \u2047 ", "", StringComparison.Ordinal);
            foreach (var special in tokenizer.SpecialTokens.Keys)
            {
                wantText = wantText.Replace(special, "", StringComparison.Ordinal);
            }

            if (text_ != wantText)
            {
                failures.Add($"{JsonSerializer.Serialize(strings[i])}: decoded {JsonSerializer.Serialize(text_)}, want {JsonSerializer.Serialize(wantText)}");
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {strings.Length} differ:\n{string.Join("\n", failures.Take(15))}");
    }

    /// <summary>Runs of one character, where several pairs merge with equal scores: SentencePiece merges the
    /// leftmost first ("====" is ▁= == =, not ▁== ==), which Microsoft.ML.Tokenizers does not.</summary>
    [Fact]
    public async Task Equal_score_merges_in_runs_of_one_character_go_leftmost_as_in_sentencepiece()
    {
        string[] runs = ["===", "====", "=====", "======", "=======", "x====y", " ==== ", "=====\n=====", "-----", "------",
            "   ", "    x", "a     b", "\t\t\t", "<|im_start|>====<|im_end|>"];
        var tokenizer = TextModel.Load(Fixtures.Path_("spm-bpe"), vocabSize: 4096).Tokenizer!;
        var path = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(path, JsonSerializer.Serialize(runs));
            var ids = (await Fixtures.RunPythonAsync("tokenize_reference.py", "sp", Fixtures.Path_("spm-bpe"), path)).GetProperty("ids");
            for (var i = 0; i < runs.Length; i++)
            {
                var want = ids[i].EnumerateArray().Select(e => e.GetInt32()).ToArray();
                Assert.True(want.SequenceEqual(tokenizer.Encode(runs[i])),
                    $"{JsonSerializer.Serialize(runs[i])}: want [{string.Join(",", want)}] got [{string.Join(",", tokenizer.Encode(runs[i]))}]");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
