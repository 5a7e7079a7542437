namespace KvCache.Text.Internal;

/// <summary>Reads <c>trainer_spec.model_type</c> from a SentencePiece model (protobuf <c>ModelProto</c>, field 2 →
/// <c>TrainerSpec</c>, field 3), to refuse the model types the library does not tokenize correctly.</summary>
internal static class SentencePieceModelType
{
    public const int Unigram = 1;
    public const int Bpe = 2;

    /// <summary>The model type; unigram (the proto's default) when the field is absent.</summary>
    /// <exception cref="InvalidDataException">Not a protobuf message.</exception>
    public static int Read(ReadOnlySpan<byte> model)
    {
        var trainer = Field(model, 2, wireType: 2);
        return trainer.IsEmpty ? Unigram : (int)Varint(Field(trainer, 3, wireType: 0), out _);
    }

    /// <summary>The payload of the first field <paramref name="number"/> (a varint's bytes, or a length-delimited body).</summary>
    private static ReadOnlySpan<byte> Field(ReadOnlySpan<byte> message, int number, int wireType)
    {
        while (!message.IsEmpty)
        {
            var key = Varint(message, out var read);
            message = message[read..];
            int type = (int)(key & 7), field = (int)(key >> 3);
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

            if (length > message.Length)
            {
                throw new InvalidDataException("Not a SentencePiece model: truncated.");
            }

            if (field == number && type == wireType)
            {
                return message[..length];
            }

            message = message[length..];
        }

        return [];
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
