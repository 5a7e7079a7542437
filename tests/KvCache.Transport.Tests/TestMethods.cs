using Google.Protobuf.WellKnownTypes;

namespace KvCache.Transport.Tests;

/// <summary>Test-only methods built from protobuf's well-known wrapper messages.</summary>
internal static class TestMethods
{
    private const string Service = "test.v1.Test";

    public static readonly Method<StringValue, StringValue> Echo =
        new(MethodType.Unary, Service, "Echo", StringValue.Parser, StringValue.Parser);

    /// <summary>Request: a size in bytes; response: that many bytes.</summary>
    public static readonly Method<Int32Value, BytesValue> Payload =
        new(MethodType.Unary, Service, "Payload", Int32Value.Parser, BytesValue.Parser);

    /// <summary>Request: how many messages; response: 0, 1, 2, ...</summary>
    public static readonly Method<Int32Value, Int32Value> Count =
        new(MethodType.ServerStreaming, Service, "Count", Int32Value.Parser, Int32Value.Parser);
}
