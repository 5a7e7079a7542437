using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Sessions;
using KvCache.Silo.Sessions.Internal;
using KvCache.Text;
using Xunit;

namespace KvCache.Silo.Tests.Sessions;

/// <summary>How a Decode ends and what text each token carries, for a model with a SentencePiece tokenizer whose
/// end-of-sequence ids are &lt;/s&gt; and the ChatML template's &lt;|im_end|&gt;.</summary>
public sealed class DecodeTextUnitTests
{
    private static readonly TextModel Text = TextModel.Load(Path.Combine(AppContext.BaseDirectory, "Fixtures", "spm-bpe"), vocabSize: 2048);
    private static readonly SamplingOptions Greedy = new(0, 0, 0, 0);

    private static int ImEnd => Text.Tokenizer!.SpecialTokenId("<|im_end|>")!.Value;

    [Fact]
    public void The_models_end_of_turn_token_stops_by_default_and_not_with_ignore_eos()
    {
        var word = Text.EncodeText("Hello")[0];
        var byDefault = new DecodeText(new DecodeRequestOptions(10, Greedy, [], null), Text, maxPosition: 100);
        Assert.Equal(FinishReason.None, byDefault.Next(word, 5, -1f, 1, replayed: false).Finish);
        var stopped = byDefault.Next(ImEnd, 6, -1f, 2, replayed: false);
        Assert.Equal(FinishReason.StopToken, stopped.Finish);
        Assert.Equal("", stopped.Text);

        var ignoring = new DecodeText(new DecodeRequestOptions(10, Greedy, [], null, IgnoreEos: true), Text, maxPosition: 100);
        Assert.Equal(FinishReason.None, ignoring.Next(ImEnd, 6, -1f, 1, replayed: false).Finish);
        var requested = new DecodeText(new DecodeRequestOptions(10, Greedy, [word], null, IgnoreEos: true), Text, maxPosition: 100);
        Assert.Equal(FinishReason.StopToken, requested.Next(word, 6, -1f, 1, replayed: false).Finish);
    }

    [Fact]
    public void Tokens_carry_their_text_and_a_stop_string_cuts_the_last_piece()
    {
        var tokens = Text.EncodeText("The cache spills. Then it resumes.");
        var decode = new DecodeText(new DecodeRequestOptions(100, Greedy, [], null, Stop: ["ls. T"]), Text, maxPosition: 1000);
        var pieces = new List<string>();
        var finish = FinishReason.None;
        for (var i = 0; i < tokens.Length && finish == FinishReason.None; i++)
        {
            var token = decode.Next(tokens[i], i, float.NaN, i + 1, replayed: true);
            pieces.Add(token.Text);
            finish = token.Finish;
        }

        Assert.Equal(FinishReason.StopString, finish);
        // Running text: the dummy prefix SentencePiece put before "The" is the space a generated word starts with.
        Assert.Equal(" The cache spills. T", string.Concat(pieces));
    }

    [Fact]
    public void A_model_without_a_tokenizer_gives_tokens_no_text_and_keeps_its_old_stops()
    {
        var decode = new DecodeText(new DecodeRequestOptions(2, Greedy, [7], null), TextModel.None, maxPosition: 100);
        Assert.Equal(new DecodedToken(3, 0, -1f, FinishReason.None, false, ""), decode.Next(3, 0, -1f, 1, replayed: false));
        Assert.Equal(FinishReason.StopToken, decode.Next(7, 1, -1f, 2, replayed: false).Finish);
        Assert.Equal(FinishReason.MaxTokens, decode.Next(2, 2, -1f, 2, replayed: false).Finish);
        Assert.Equal(FinishReason.MaxPosition, decode.Next(2, 99, -1f, 1, replayed: false).Finish);
    }
}
