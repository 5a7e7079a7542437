using System.Text;
using KvCache.Contracts.Snapshots;
using Xunit;

namespace KvCache.Silo.Tests.Snapshots;

public sealed class XxHash64UnitTests
{
    [Theory]
    [InlineData("", 0xEF46DB3751D8E999UL)]
    [InlineData("a", 0xD24EC4F1A98C6E5BUL)]
    [InlineData("abc", 0x44BC2CF5AD770999UL)]
    [InlineData("Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1UL)]
    public void Matches_reference_vectors(string input, ulong expected) =>
        Assert.Equal(expected, XxHash64.Hash(Encoding.ASCII.GetBytes(input)));

    [Fact]
    public void Any_split_of_the_input_gives_the_same_hash()
    {
        var data = new byte[10_000];
        new Random(42).NextBytes(data);
        ulong whole = XxHash64.Hash(data);
        var random = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            var hash = new XxHash64();
            int offset = 0;
            while (offset < data.Length)
            {
                int n = Math.Min(data.Length - offset, random.Next(0, trial % 2 == 0 ? 40 : 3000));
                hash.Append(data.AsSpan(offset, n));
                offset += n;
            }

            Assert.Equal(whole, hash.GetCurrentHash());
        }
    }

    [Fact]
    public void Every_length_hashes_alike_whole_and_bytewise()
    {
        var data = new byte[200];
        new Random(1).NextBytes(data);
        for (int length = 0; length <= data.Length; length++)
        {
            var hash = new XxHash64();
            foreach (byte b in data.AsSpan(0, length))
            {
                hash.Append([b]);
            }

            Assert.Equal(XxHash64.Hash(data.AsSpan(0, length)), hash.GetCurrentHash());
        }
    }

    [Fact]
    public void A_seed_changes_the_hash() =>
        Assert.NotEqual(XxHash64.Hash("abc"u8), XxHash64.Hash("abc"u8, seed: 1));
}
