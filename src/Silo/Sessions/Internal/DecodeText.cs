using KvCache.Text;

namespace KvCache.Silo.Sessions.Internal;

/// <summary>
/// One Decode's view of its tokens: why each one ends the stream (a stop token — the request's, plus the model's
/// end-of-sequence ids unless ignore_eos — a stop string, max_tokens or the last position) and its text, from an
/// incremental detokenizer that starts with the Decode (a replay rebuilds the same text).
/// </summary>
internal sealed class DecodeText(DecodeRequestOptions options, TextModel text, int maxPosition)
{
    private readonly int[] _stopTokens = options.IgnoreEos || text.EosTokenIds.Count == 0
        ? options.StopTokenIds
        : [.. options.StopTokenIds.Union(text.EosTokenIds)];

    private readonly IncrementalDetokenizer? _detokenizer = text.Tokenizer is { } tokenizer ? new IncrementalDetokenizer(tokenizer) : null;
    private readonly StopStrings? _stops = options.Stop is { Length: > 0 } stops ? new StopStrings(stops) : null;

    public DecodedToken Next(int token, long position, float logprob, int produced, bool replayed)
    {
        var finish = Array.IndexOf(_stopTokens, token) >= 0 ? FinishReason.StopToken
            : produced >= options.MaxTokens ? FinishReason.MaxTokens
            : position + 1 >= maxPosition ? FinishReason.MaxPosition
            : FinishReason.None;
        var piece = _detokenizer?.Push(token) ?? "";
        if (_stops?.Match(piece) is >= 0 and var end)
        {
            // The matched string ends the text; what the token held past it is not generated text.
            piece = piece[..end];
            finish = finish == FinishReason.StopToken ? finish : FinishReason.StopString;
        }

        return new DecodedToken(token, position, logprob, finish, replayed, piece);
    }
}
