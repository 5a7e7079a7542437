using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using KvCache.Contracts.Snapshots;
using KvCache.GpuWorker.Sampling;

namespace KvCache.Silo.Sessions.Internal;

/// <summary>
/// What the store keeps of a request with an id, so that repeating the id is answered from what the first attempt
/// did: a Decode's parameters as a fingerprint; an Append's fingerprint and its whole result.
/// </summary>
internal static class RequestRecords
{
    // fingerprint, position, appended tokens, top count, prompt count; then (token id, logprob) pairs: top, then prompt.
    private const int AppendHeaderLength = sizeof(ulong) + sizeof(long) + sizeof(int) + sizeof(int) + sizeof(int);

    /// <summary>Every parameter that decides which tokens a Decode produces and where it stops.</summary>
    public static string Fingerprint(DecodeRequestOptions options)
    {
        var hash = new XxHash64();
        Span<byte> fixedPart = stackalloc byte[sizeof(int) + sizeof(float) + sizeof(int) + sizeof(float) + sizeof(ulong)];
        BinaryPrimitives.WriteInt32LittleEndian(fixedPart, options.MaxTokens);
        BinaryPrimitives.WriteSingleLittleEndian(fixedPart[4..], options.Sampling.Temperature);
        BinaryPrimitives.WriteInt32LittleEndian(fixedPart[8..], options.Sampling.TopK);
        BinaryPrimitives.WriteSingleLittleEndian(fixedPart[12..], options.Sampling.TopP);
        BinaryPrimitives.WriteUInt64LittleEndian(fixedPart[16..], options.Sampling.Seed);
        hash.Append(fixedPart);

        // Stop tokens and strings are sets: their order does not change where a stream stops.
        int[] stops = [.. options.StopTokenIds.Distinct().Order()];
        AppendInts(ref hash, stops);
        string[] strings = [.. (options.Stop ?? []).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
        AppendInts(ref hash, [strings.Length, options.IgnoreEos ? 1 : 0]);
        foreach (var stop in strings)
        {
            AppendString(ref hash, stop);
        }

        return hash.GetCurrentHash().ToString("x16", CultureInfo.InvariantCulture);
    }

    /// <summary>An Append's input (token ids, text or messages) and what it asked to get back.</summary>
    public static ulong Fingerprint(AppendInput input)
    {
        var hash = new XxHash64();
        AppendInts(ref hash, [input.TopLogprobs, input.PromptLogprobs ? 1 : 0, input.Messages.Length]);
        AppendInts(ref hash, input.TokenIds);
        AppendString(ref hash, input.Text ?? "");
        foreach (var message in input.Messages)
        {
            AppendString(ref hash, message.Role);
            AppendString(ref hash, message.Content);
        }

        return hash.GetCurrentHash();
    }

    public static byte[] EncodeAppend(ulong fingerprint, AppendResult result)
    {
        TokenLogprob[] pairs = [.. result.TopLogprobs, .. result.PromptLogprobs];
        var bytes = new byte[AppendHeaderLength + (pairs.Length * 8)];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, fingerprint);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8), result.Position);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(16), result.AppendedTokens);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(20), result.TopLogprobs.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(24), result.PromptLogprobs.Length);
        for (var i = 0; i < pairs.Length; i++)
        {
            var at = AppendHeaderLength + (i * 8);
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), pairs[i].TokenId);
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(at + 4), pairs[i].Logprob);
        }

        return bytes;
    }

    /// <summary>A recorded Append: its fingerprint and its result, marked replayed.</summary>
    /// <exception cref="InvalidDataException">Not a record <see cref="EncodeAppend"/> wrote.</exception>
    public static (ulong Fingerprint, AppendResult Result) DecodeAppend(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < AppendHeaderLength)
        {
            throw new InvalidDataException("An Append record is shorter than its header.");
        }

        var topCount = BinaryPrimitives.ReadInt32LittleEndian(bytes[20..]);
        var promptCount = BinaryPrimitives.ReadInt32LittleEndian(bytes[24..]);
        if (topCount < 0 || promptCount < 0 || bytes.Length != AppendHeaderLength + (((long)topCount + promptCount) * 8))
        {
            throw new InvalidDataException("An Append record's length does not match its log-probabilities.");
        }

        var pairs = new TokenLogprob[topCount + promptCount];
        for (var i = 0; i < pairs.Length; i++)
        {
            var at = AppendHeaderLength + (i * 8);
            pairs[i] = new TokenLogprob(BinaryPrimitives.ReadInt32LittleEndian(bytes[at..]), BinaryPrimitives.ReadSingleLittleEndian(bytes[(at + 4)..]));
        }

        var result = new AppendResult(
            BinaryPrimitives.ReadInt64LittleEndian(bytes[8..]),
            pairs[..topCount],
            pairs[topCount..],
            BinaryPrimitives.ReadInt32LittleEndian(bytes[16..]),
            Replayed: true);
        return (BinaryPrimitives.ReadUInt64LittleEndian(bytes), result);
    }

    private static void AppendString(ref XxHash64 hash, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        AppendInts(ref hash, [bytes.Length]);
        hash.Append(bytes);
    }

    private static void AppendInts(ref XxHash64 hash, ReadOnlySpan<int> values)
    {
        Span<byte> length = stackalloc byte[sizeof(int)];
        BinaryPrimitives.WriteInt32LittleEndian(length, values.Length);
        hash.Append(length);
        if (BitConverter.IsLittleEndian)
        {
            hash.Append(MemoryMarshal.AsBytes(values));
            return;
        }

        Span<byte> one = stackalloc byte[sizeof(int)];
        foreach (var value in values)
        {
            BinaryPrimitives.WriteInt32LittleEndian(one, value);
            hash.Append(one);
        }
    }
}
