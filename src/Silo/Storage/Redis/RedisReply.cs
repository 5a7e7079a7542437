using System.Text;

namespace KvCache.Silo.Storage.Redis;

public enum RedisReplyKind
{
    SimpleString,
    Error,
    Integer,
    BulkString,
    Array,
    Null,
}

/// <summary>A RESP2 reply.</summary>
public sealed class RedisReply
{
    public static readonly RedisReply Null = new(RedisReplyKind.Null);
    public static readonly RedisReply Ok = new(RedisReplyKind.SimpleString) { Text = "OK" };

    private RedisReply(RedisReplyKind kind) => Kind = kind;

    public RedisReplyKind Kind { get; }

    /// <summary>Simple string or error text.</summary>
    public string? Text { get; private init; }

    public long Integer { get; private init; }

    /// <summary>Bulk string bytes, unless the command read it into caller memory.</summary>
    public byte[]? Bytes { get; private init; }

    /// <summary>Length of a bulk string (also when it was read into caller memory).</summary>
    public int Length { get; private init; }

    public IReadOnlyList<RedisReply>? Items { get; private init; }

    public bool IsNull => Kind == RedisReplyKind.Null;

    internal bool DidNotFit { get; private init; }

    internal static RedisReply Simple(string text) => text == "OK" ? Ok : new(RedisReplyKind.SimpleString) { Text = text };

    internal static RedisReply Error(string text) => new(RedisReplyKind.Error) { Text = text };

    internal static RedisReply FromInteger(long value) => new(RedisReplyKind.Integer) { Integer = value };

    internal static RedisReply Bulk(byte[] bytes) => new(RedisReplyKind.BulkString) { Bytes = bytes, Length = bytes.Length };

    internal static RedisReply BulkRead(int length, bool fit) => new(RedisReplyKind.BulkString) { Length = length, DidNotFit = !fit };

    internal static RedisReply FromItems(RedisReply[] items) => new(RedisReplyKind.Array) { Items = items };

    /// <summary>The integer value; throws if the reply is another kind.</summary>
    public long AsInt64() => Kind == RedisReplyKind.Integer ? Integer : throw Unexpected("an integer");

    /// <summary>Text of a simple or bulk string; null for a null reply.</summary>
    public string? AsString() => Kind switch
    {
        RedisReplyKind.SimpleString => Text,
        RedisReplyKind.BulkString when Bytes is not null => Encoding.UTF8.GetString(Bytes),
        RedisReplyKind.Null => null,
        _ => throw Unexpected("a string"),
    };

    public IReadOnlyList<RedisReply> AsArray() => Items ?? throw Unexpected("an array");

    public override string ToString() => Kind switch
    {
        RedisReplyKind.SimpleString => Text!,
        RedisReplyKind.Error => "ERR " + Text,
        RedisReplyKind.Integer => Integer.ToString(System.Globalization.CultureInfo.InvariantCulture),
        RedisReplyKind.BulkString => Bytes is { Length: <= 64 } b ? Encoding.UTF8.GetString(b) : $"({Length} bytes)",
        RedisReplyKind.Array => $"[{string.Join(", ", Items!)}]",
        _ => "(nil)",
    };

    private RedisException Unexpected(string wanted) => new($"Expected {wanted} reply, got {Kind}: {this}.");
}
