using System.Text;
using Microsoft.ML.Tokenizers;

namespace KvCache.Text.Internal;

/// <summary>A SentencePiece BPE <c>tokenizer.model</c> (Llama 2, Mistral): Microsoft.ML.Tokenizers loads it and
/// normalizes text, SentencePieceBpe merges (the library breaks equal-score ties unlike SentencePiece).</summary>
/// <remarks>
/// Special tokens are split out before a text is normalized (PromptEncoder). A run of text after a special token
/// is normalized without the dummy prefix, as SentencePiece does when it meets a user-defined symbol inside one text.
/// </remarks>
internal sealed class SentencePieceTextTokenizer : TextTokenizer
{
    private const char Escape = '\u2581';

    private readonly SentencePieceBpe _bpe;
    private readonly Normalizer? _normalizer;
    private readonly SentencePieceNormalizer? _continuation;

    private SentencePieceTextTokenizer(SentencePieceTokenizer plain, SentencePieceBpe bpe, byte[][] bytes, IReadOnlyDictionary<string, int> specials)
        : base(SentencePieceKind, bytes, specials)
    {
        _bpe = bpe;
        _normalizer = plain.Normalizer;
        if (plain.Normalizer is SentencePieceNormalizer n && n.AddDummyPrefix)
        {
            _continuation = new SentencePieceNormalizer(n.RemoveExtraWhiteSpaces, addDummyPrefix: false, n.EscapeWhiteSpaces, n.TreatWhitespaceAsSuffix, specialTokens: null);
        }
    }

    public static SentencePieceTextTokenizer Load(string path, IReadOnlyDictionary<string, int> configuredSpecials)
    {
        var model = File.ReadAllBytes(path);
        if (SentencePieceModelProto.ReadModelType(model) != SentencePieceModelProto.Bpe)
        {
            // Microsoft.ML.Tokenizers 2.0.1 gives unigram models' byte-fallback pieces wrong ids.
            throw new NotSupportedException($"{path} is not a SentencePiece BPE model; only BPE models (spm_train --model_type=bpe, as Llama 2 and Mistral) are supported.");
        }

        var plain = SentencePieceTokenizer.Create(new MemoryStream(model), addBeginningOfSentence: false, addEndOfSentence: false);
        var pieces = new string?[plain.Vocabulary.Values.DefaultIfEmpty(-1).Max() + 1];
        foreach (var (piece, id) in plain.Vocabulary)
        {
            pieces[id] = piece;
        }

        // SentencePiece matches its user-defined pieces in text; tokenizer_config.json may add more.
        var modelPieces = SentencePieceModelProto.ReadPieces(model);
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var id = 0; id < modelPieces.Length; id++)
        {
            if (modelPieces[id].Type == SentencePieceModelProto.UserDefined)
            {
                specials[modelPieces[id].Text] = id;
            }
        }

        foreach (var (text, id) in configuredSpecials)
        {
            if ((uint)id < (uint)pieces.Length)
            {
                specials[text] = id;
            }
        }

        foreach (var id in new[] { plain.BeginningOfSentenceId, plain.EndOfSentenceId })
        {
            if ((uint)id < (uint)pieces.Length && pieces[id] is { } piece)
            {
                specials.TryAdd(piece, id);
            }
        }

        var specialIds = specials.Values.ToHashSet();
        var bytes = new byte[pieces.Length][];
        for (var id = 0; id < pieces.Length; id++)
        {
            bytes[id] = specialIds.Contains(id) || pieces[id] is not { } piece ? [] : PieceBytes(piece, plain.ByteFallback);
        }

        return new SentencePieceTextTokenizer(plain, new SentencePieceBpe(modelPieces, plain.ByteFallback), bytes, specials);
    }

    public override void Encode(string text, bool atStart, List<int> ids)
    {
        if (text.Length == 0)
        {
            return;
        }

        var normalizer = atStart ? _normalizer : _continuation ?? _normalizer;
        _bpe.Encode(normalizer is null ? text : normalizer.Normalize(text), ids);
    }

    internal override void EncodeDummyPrefix(List<int> ids)
    {
        if (_continuation is not null)
        {
            Encode(" ", atStart: false, ids);
        }
    }

    /// <summary>A piece's bytes: <c>&lt;0xNN&gt;</c> byte-fallback pieces are one byte, ▁ is a space.</summary>
    private static byte[] PieceBytes(string piece, bool byteFallback)
    {
        if (byteFallback && SentencePieceBpe.TryParseByte(piece, out var b))
        {
            return [b];
        }

        return Encoding.UTF8.GetBytes(piece.Replace(Escape, ' '));
    }
}
