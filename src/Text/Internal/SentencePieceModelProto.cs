namespace KvCache.Text.Internal;

/// <summary>
/// Reads what the library does not expose from a SentencePiece model (protobuf <c>ModelProto</c>): the model type
/// (field 2 <c>trainer_spec</c> → field 3), to refuse types the library does not tokenize correctly, and the
/// user-defined pieces (field 1 <c>pieces</c>, type 4), which SentencePiece matches in text as special tokens.
/// </summary>
internal static class SentencePieceModelProto
{
    public const int Unigram = 1;
    public const int Bpe = 2;

    private const int UserDefined = 4;

    /// <summary>The model type; unigram (the proto's default) when the field is absent.</summary>
    /// <exception cref="InvalidDataException">Not a protobuf message.</exception>
    public static int ReadModelType(ReadOnlySpan<byte> model)
    {
        var trainer = Field(model, 2, wireType: 2);
        return trainer.IsEmpty ? Unigram : (int)Varint(Field(trainer, 3, wireType: 0), out _);
    }

    /// <summary>The user-defined pieces (e.g. chat markers given to spm_train's --user_defined_symbols) and their ids.</summary>
    /// <exception cref="InvalidDataException">Not a protobuf message.</exception>
    public static Dictionary<string, int> ReadUserDefinedPieces(ReadOnlySpan<byte> model)
    {
        var pieces = new Dictionary<string, int>(StringComparer.Ordinal);
        var id = 0;
        while (!model.IsEmpty)
        {
            var piece = Next(ref model, out var number, out var wireType);
            if (number != 1 || wireType != 2)
            {
                continue;
            }

            var type = Field(piece, 3, wireType: 0);
            if (!type.IsEmpty && Varint(type, out _) == UserDefined)
            {
                pieces[System.Text.Encoding.UTF8.GetString(Field(piece, 1, wireType: 2))] = id;
            }

            id++;
        }

        return pieces;
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
