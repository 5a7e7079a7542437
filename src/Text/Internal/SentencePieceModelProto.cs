using System.Buffers.Binary;

namespace KvCache.Text.Internal;

/// <summary>
/// Reads what the library does not expose from a SentencePiece model (protobuf <c>ModelProto</c>): the model type
/// (field 2 <c>trainer_spec</c> → field 3), to refuse types the library does not tokenize correctly, and the pieces
/// with their scores and types (field 1 <c>pieces</c>), which SentencePieceBpe merges by.
/// </summary>
internal static class SentencePieceModelProto
{
    /// <summary>One entry of <c>ModelProto.pieces</c>; its id is its index.</summary>
    public readonly record struct Piece(string Text, float Score, int Type);

    public const int Unigram = 1;
    public const int Bpe = 2;

    /// <summary>Piece types (<c>ModelProto.SentencePiece.Type</c>).</summary>
    public const int Normal = 1;
    public const int Unknown = 2;
    public const int UserDefined = 4;
    public const int Unused = 5;
    public const int Byte = 6;

    /// <summary>The model type; unigram (the proto's default) when the field is absent.</summary>
    /// <exception cref="InvalidDataException">Not a protobuf message.</exception>
    public static int ReadModelType(ReadOnlySpan<byte> model)
    {
        var trainer = Field(model, 2, wireType: 2);
        return trainer.IsEmpty ? Unigram : (int)Varint(Field(trainer, 3, wireType: 0), out _);
    }

    /// <summary>Every piece (field 1 <c>pieces</c>) in id order: its text (1), score (2, a float) and type (3).</summary>
    /// <exception cref="InvalidDataException">Not a protobuf message.</exception>
    public static Piece[] ReadPieces(ReadOnlySpan<byte> model)
    {
        var pieces = new List<Piece>();
        while (!model.IsEmpty)
        {
            var piece = Next(ref model, out var number, out var wireType);
            if (number != 1 || wireType != 2)
            {
                continue;
            }

            var score = Field(piece, 2, wireType: 5);
            var type = Field(piece, 3, wireType: 0);
            pieces.Add(new Piece(
                System.Text.Encoding.UTF8.GetString(Field(piece, 1, wireType: 2)),
                score.IsEmpty ? 0f : BinaryPrimitives.ReadSingleLittleEndian(score),
                type.IsEmpty ? Normal : (int)Varint(type, out _)));
        }

        return [.. pieces];
    }

    /// <summary>The payload of the first field <paramref name="number"/> (a varint's bytes, or a length-delimited body).</summary>
    private static ReadOnlySpan<byte> Field(ReadOnlySpan<byte> message, int number, int wireType)
    {
        while (!message.IsEmpty)
        {
            var payload = Next(ref message, out var field, out var type);
            if (field == number && type == wireType)
            {
                return payload;
            }
        }

        return [];
    }

    /// <summary>Reads one field off the front of <paramref name="message"/>: its number, wire type and payload.</summary>
    private static ReadOnlySpan<byte> Next(scoped ref ReadOnlySpan<byte> message, out int field, out int type)
    {
        var key = Varint(message, out var read);
        message = message[read..];
        type = (int)(key & 7);
        field = (int)(key >> 3);
        int length = type switch
        {
            0 => VarintLength(message),
            1 => 8,
            2 => checked((int)Varint(message, out read)),
            5 => 4,
            _ => throw new InvalidDataException($"Not a SentencePiece model: wire type {type}."),
        };
        if (type == 2)
        {
            message = message[read..];
        }

        if (length < 0 || length > message.Length)
        {
            throw new InvalidDataException("Not a SentencePiece model: truncated.");
        }

        var payload = message[..length];
        message = message[length..];
        return payload;
    }

    private static ulong Varint(ReadOnlySpan<byte> data, out int read)
    {
        ulong value = 0;
        for (read = 0; read < data.Length && read < 10; read++)
        {
            value |= (ulong)(data[read] & 0x7F) << (7 * read);
            if ((data[read] & 0x80) == 0)
            {
                read++;
                return value;
            }
        }

        throw new InvalidDataException("Not a SentencePiece model: bad varint.");
    }

    private static int VarintLength(ReadOnlySpan<byte> data)
    {
        Varint(data, out var read);
        return read;
    }
}
