using KvCache.Transport.Internal;
using Xunit;

namespace KvCache.Transport.Tests;

public sealed class ProtocolHelpersUnitTests
{
    [Theory]
    [InlineData("1H", 36_000_000_000L)]
    [InlineData("2M", 1_200_000_000L)]
    [InlineData("3S", 30_000_000L)]
    [InlineData("250m", 2_500_000L)]
    [InlineData("7u", 70L)]
    [InlineData("150n", 2L)]
    [InlineData("99999999H", 99_999_999L * 36_000_000_000L)]
    public void GrpcTimeout_ParsesEveryUnit(string value, long expectedTicks)
    {
        Assert.True(GrpcTimeout.TryParse(value, out var timeout));
        Assert.Equal(expectedTicks, timeout.Ticks);
    }

    [Theory]
    [InlineData("")]
    [InlineData("S")]
    [InlineData("10")]
    [InlineData("10s")]
    [InlineData("-1S")]
    [InlineData("123456789S")]
    public void GrpcTimeout_RejectsMalformedValues(string value) => Assert.False(GrpcTimeout.TryParse(value, out _));

    [Theory]
    [InlineData(1L, "100n")]
    [InlineData(TimeSpan.TicksPerMillisecond * 250, "250000u")]
    [InlineData(TimeSpan.TicksPerSecond * 30, "30000000u")]
    [InlineData(TimeSpan.TicksPerDay * 3, "259200S")]
    public void GrpcTimeout_FormatsInTheFinestUnitThatFits(long ticks, string expected)
    {
        var formatted = GrpcTimeout.Format(TimeSpan.FromTicks(ticks));

        Assert.Equal(expected, formatted);
        Assert.True(GrpcTimeout.TryParse(formatted, out var parsed));
        Assert.Equal(ticks, parsed.Ticks);
    }

    [Theory]
    [InlineData("plain ascii", "plain ascii")]
    [InlineData("50% off", "50%25 off")]
    [InlineData("line\nbreak", "line%0Abreak")]
    [InlineData("ü💾", "%C3%BC%F0%9F%92%BE")]
    public void PercentEncoding_EncodesAndDecodes(string text, string encoded)
    {
        Assert.Equal(encoded, PercentEncoding.Encode(text));
        Assert.Equal(text, PercentEncoding.Decode(encoded));
    }

    [Theory]
    [InlineData("%", "%")]
    [InlineData("%4", "%4")]
    [InlineData("%ZZ ok", "%ZZ ok")]
    [InlineData("raw ü kept %41", "raw ü kept A")]
    public void PercentEncoding_DecodesLeniently(string encoded, string expected) =>
        Assert.Equal(expected, PercentEncoding.Decode(encoded));

    [Fact]
    public void Metadata_KeysAreCaseInsensitive_AndLastValueWins()
    {
        var metadata = new Metadata { { "Authorization", "Bearer a" }, { "authorization", "Bearer b" } };

        Assert.Equal(2, metadata.Count);
        Assert.Equal("Bearer b", metadata.GetValue("AUTHORIZATION"));
        Assert.Null(metadata.GetValue("missing"));
        Assert.Equal("authorization", metadata[0].Key);
    }

    [Theory]
    [InlineData("application/grpc", true)]
    [InlineData("application/grpc+proto", true)]
    [InlineData("application/grpc; charset=utf-8", true)]
    [InlineData("application/grpc+json", false)]
    [InlineData("application/grpcweb", false)]
    [InlineData("application/json", false)]
    [InlineData(null, false)]
    public void ContentType_AcceptsOnlyProtoGrpc(string? contentType, bool expected) =>
        Assert.Equal(expected, GrpcProtocol.IsGrpcContentType(contentType));
}
