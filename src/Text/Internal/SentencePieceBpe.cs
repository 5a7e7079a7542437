using System.Buffers;
using System.Globalization;
using System.Text;

namespace KvCache.Text.Internal;

/// <summary>
/// SentencePiece BPE's merge step (bpe_model.cc) over normalized text: the text starts as one symbol per code point,
/// then the adjacent pair whose concatenation is the highest-scoring piece merges, the leftmost pair among equal
/// scores, until no pair is a piece. Symbols left that are not pieces become byte-fallback pieces, or one unknown id
/// per run of them when the model has no byte fallback.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers 2.0.1 (and 3.0.0) merges the rightmost of equal-score pairs, so runs such as "===="
/// split into other pieces than SentencePiece's (16 of the 1,200 reference strings). Only normal pieces are merge
/// targets: user-defined pieces are split out before as special tokens, and unused pieces (which SentencePiece
/// re-splits) are refused at load.
/// </remarks>
internal sealed class SentencePieceBpe
{
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly float[] _scores;
    private readonly int[]? _byteIds;
    private readonly int _unknownId;

    public SentencePieceBpe(IReadOnlyList<SentencePieceModelProto.Piece> pieces, bool byteFallback)
    {
        var normal = new Dictionary<string, int>(StringComparer.Ordinal);
        _scores = new float[pieces.Count];
        _unknownId = -1;
        var byteIds = new int[256];
        Array.Fill(byteIds, -1);
        for (var id = 0; id < pieces.Count; id++)
        {
            var piece = pieces[id];
            _scores[id] = piece.Score;
            switch (piece.Type)
            {
                case SentencePieceModelProto.Normal:
                    normal.TryAdd(piece.Text, id);
                    break;
                case SentencePieceModelProto.Unknown:
                    _unknownId = id;
                    break;
                case SentencePieceModelProto.Byte when TryParseByte(piece.Text, out var b):
                    byteIds[b] = id;
                    break;
                case SentencePieceModelProto.Unused:
                    throw new NotSupportedException($"SentencePiece piece {id} ({piece.Text}) is of type UNUSED, which this tokenizer does not re-split as SentencePiece does.");
            }
        }

        if (_unknownId < 0)
        {
            throw new InvalidDataException("The SentencePiece model has no unknown piece.");
        }

        if (byteFallback)
        {
            // SentencePiece looks byte pieces up by their text; a missing one is the unknown id.
            _byteIds = Array.ConvertAll(byteIds, id => id < 0 ? _unknownId : id);
        }

        _lookup = normal.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Appends the ids of already normalized text (SentencePiece's ▁ for spaces, dummy prefix applied).</summary>
    public void Encode(ReadOnlySpan<char> text, List<int> ids)
    {
        if (text.IsEmpty)
        {
            return;
        }

        var symbols = ArrayPool<Symbol>.Shared.Rent(text.Length);
        // Each merge pushes at most two pairs: n - 1 initial pairs and at most n - 1 merges.
        var heap = ArrayPool<Pair>.Shared.Rent(3 * text.Length);
        try
        {
            var count = 0;
            for (var at = 0; at < text.Length;)
            {
                var length = char.IsHighSurrogate(text[at]) && at + 1 < text.Length && char.IsLowSurrogate(text[at + 1]) ? 2 : 1;
                symbols[count] = new Symbol(at, length, count - 1, at + length < text.Length ? count + 1 : -1);
                count++;
                at += length;
            }

            var queue = new PairQueue(heap);
            for (var i = 0; i + 1 < count; i++)
            {
                TryPush(text, symbols, ref queue, i, i + 1);
            }

            while (queue.TryPop(out var top))
            {
                ref var left = ref symbols[top.Left];
                ref var right = ref symbols[top.Right];
                // A pair queued before one of its symbols changed is stale (as SentencePiece checks: by length).
                if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != top.Length)
                {
                    continue;
                }

                left.Length += right.Length;
                left.Next = right.Next;
                if (right.Next >= 0)
                {
                    symbols[right.Next].Prev = top.Left;
                }

                right.Length = 0;
                TryPush(text, symbols, ref queue, left.Prev, top.Left);
                TryPush(text, symbols, ref queue, top.Left, left.Next);
            }

            Span<byte> utf8 = stackalloc byte[8];
            var previousUnknown = false;
            for (var i = 0; i >= 0; i = symbols[i].Next)
            {
                var piece = text.Slice(symbols[i].Start, symbols[i].Length);
                if (_lookup.TryGetValue(piece, out var id))
                {
                    ids.Add(id);
                    previousUnknown = false;
                }
                else if (_byteIds is not null)
                {
                    foreach (var b in utf8[..Encoding.UTF8.GetBytes(piece, utf8)])
                    {
                        ids.Add(_byteIds[b]);
                    }
                }
                else if (!previousUnknown)
                {
                    // SentencePiece merges a run of unknown symbols into one unknown piece.
                    ids.Add(_unknownId);
                    previousUnknown = true;
                }
            }
        }
        finally
        {
            ArrayPool<Symbol>.Shared.Return(symbols);
            ArrayPool<Pair>.Shared.Return(heap);
        }
    }

    /// <summary>The byte of a byte-fallback piece's text, <c>&lt;0xNN&gt;</c>.</summary>
    internal static bool TryParseByte(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && byte.TryParse(piece.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }

    private void TryPush(ReadOnlySpan<char> text, Symbol[] symbols, ref PairQueue queue, int left, int right)
    {
        if (left < 0 || right < 0)
        {
            return;
        }

        var length = symbols[left].Length + symbols[right].Length;
        if (_lookup.TryGetValue(text.Slice(symbols[left].Start, length), out var id))
        {
            queue.Push(new Pair(_scores[id], left, right, length));
        }
    }

    /// <summary>A symbol of the text: a span of it, linked to its neighbours; length 0 once merged into its left.</summary>
    private record struct Symbol(int Start, int Length, int Prev, int Next);

    /// <summary>A candidate merge: the score of the piece the two symbols make, and its length when queued.</summary>
    private readonly record struct Pair(float Score, int Left, int Right, int Length);

    /// <summary>A binary max-heap of pairs on a rented array: highest score first, then the leftmost (bpe_model.cc's order).</summary>
    private ref struct PairQueue(Pair[] items)
    {
        private int _count;

        public void Push(Pair pair)
        {
            var i = _count++;
            while (i > 0)
            {
                var parent = (i - 1) / 2;
                if (!Before(pair, items[parent]))
                {
                    break;
                }

                items[i] = items[parent];
                i = parent;
            }

            items[i] = pair;
        }

        public bool TryPop(out Pair top)
        {
            if (_count == 0)
            {
                top = default;
                return false;
            }

            top = items[0];
            var last = items[--_count];
            var i = 0;
            while (true)
            {
                var child = (2 * i) + 1;
                if (child >= _count)
                {
                    break;
                }

                if (child + 1 < _count && Before(items[child + 1], items[child]))
                {
                    child++;
                }

                if (!Before(items[child], last))
                {
                    break;
                }

                items[i] = items[child];
                i = child;
            }

            items[i] = last;
            return true;
        }

        private static bool Before(Pair a, Pair b) => a.Score > b.Score || (a.Score == b.Score && a.Left < b.Left);
    }
}
