using KvCache.Contracts.Snapshots;
using Xunit;

namespace KvCache.Silo.Tests.Snapshots;

public sealed class SnapshotHeaderUnitTests
{
    private static readonly SnapshotHeader Sample = new("llama-tiny", "sha256:abcd", "full", 1234, 5_000_000, 32000, 1 << 20, 5, 0x0123456789ABCDEFUL);

    [Fact]
    public void Encodes_and_decodes()
    {
        byte[] bytes = Sample.Encode();
        Assert.Equal(Sample.EncodedLength, bytes.Length);
        Assert.Equal(Sample, SnapshotHeader.Decode(bytes));
        Assert.Equal(5_128_000, Sample.PayloadLength);
        Assert.Equal(1 << 20, Sample.ChunkLength(0));
        Assert.Equal(5_128_000 - 4 * (1 << 20), Sample.ChunkLength(4));
    }

    [Fact]
    public void Refuses_garbage_a_flipped_byte_truncation_and_other_versions()
    {
        Assert.Throws<SnapshotFormatException>(() => SnapshotHeader.Decode([]));
        Assert.Throws<SnapshotFormatException>(() => SnapshotHeader.Decode(new byte[100]));
        var random = new byte[200];
        new Random(5).NextBytes(random);
        Assert.Throws<SnapshotFormatException>(() => SnapshotHeader.Decode(random));

        byte[] bytes = Sample.Encode();
        for (int i = 0; i < bytes.Length; i++)
        {
            var flipped = (byte[])bytes.Clone();
            flipped[i] ^= 0x10;
            Assert.Throws<SnapshotFormatException>(() => SnapshotHeader.Decode(flipped));
        }

        Assert.Throws<SnapshotFormatException>(() => SnapshotHeader.Decode(bytes.AsSpan(0, bytes.Length - 1)));
        var e = Assert.Throws<SnapshotFormatException>(() => SnapshotHeader.Decode((Sample with { FormatVersion = 2 }).Encode()));
        Assert.Contains("version 2", e.Message);
    }

    [Fact]
    public void Refuses_to_encode_an_inconsistent_header()
    {
        Assert.ThrowsAny<ArgumentException>(() => (Sample with { ChunkCount = 4 }).Encode());
        Assert.ThrowsAny<ArgumentException>(() => (Sample with { ChunkSize = (1 << 20) + 1 }).Encode());
    }
}
