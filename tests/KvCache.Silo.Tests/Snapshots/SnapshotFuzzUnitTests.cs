using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using Xunit;
using Xunit.Abstractions;

namespace KvCache.Silo.Tests.Snapshots;

/// <summary>
/// Seeded snapshot blobs (corrupted, truncated, wrong checksum, another codec's header, random) fed to
/// <see cref="SnapshotReader"/>: each is restored exactly or refused with a snapshot exception, nothing else.
/// </summary>
public sealed class SnapshotFuzzUnitTests(ITestOutputHelper output)
{
    private const int Cases = 20_000;
    private const int BytesPerToken = 96;
    private const int Vocab = 11;
    private static readonly SnapshotOptions SmallChunks = new() { ChunkSize = 512, MaxInFlight = 2 };
    private static readonly SessionKey Key = new("tenant", "session");

    [Fact]
    public async Task Every_mutated_snapshot_is_restored_exactly_or_refused()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("KVCACHE_FUZZ_SEED"), out var s) ? s : 20260107;
        using var original = ByteArrayKvCache.Filled("full", BytesPerToken, position: 20, seed: 3);
        using var otherCodec = ByteArrayKvCache.Filled("svd-gqa", BytesPerToken, position: 20, seed: 3);
        var logits = Enumerable.Range(0, Vocab).Select(i => (float)i).ToArray();
        var (header, chunks) = await WrittenAsync(original, logits);
        var (foreignHeader, _) = await WrittenAsync(otherCodec, logits);
        var outcomes = new Dictionary<string, int>();
        for (var i = 0; i < Cases; i++)
        {
            var random = new Random(HashCode.Combine(seed, i));
            var h = header.ToArray();
            var c = chunks.Select(x => x.ToArray()).ToArray();
            switch (random.Next(6))
            {
                case 0: // flip bytes of a chunk (the checksum must catch it)
                    var chunk = c[random.Next(c.Length)];
                    chunk[random.Next(chunk.Length)] ^= (byte)random.Next(1, 256);
                    break;
                case 1: // truncate a chunk
                    var at = random.Next(c.Length);
                    c[at] = c[at][..random.Next(c[at].Length)];
                    break;
                case 2: // flip header bytes (lengths, checksum, ids)
                    for (var n = random.Next(1, 4); n > 0; n--)
                    {
                        h[random.Next(h.Length)] ^= (byte)random.Next(1, 256);
                    }

                    break;
                case 3: // truncate the header
                    h = h[..random.Next(h.Length)];
                    break;
                case 4: // another codec's header over these chunks
                    h = foreignHeader.ToArray();
                    break;
                default: // random bytes for everything
                    h = new byte[random.Next(0, 200)];
                    random.NextBytes(h);
                    foreach (var x in c)
                    {
                        random.NextBytes(x);
                    }

                    break;
            }

            var outcome = await RestoreAsync(h, c, original, logits);
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            Assert.True(outcome is "restored" or nameof(SnapshotCorruptException) or nameof(SnapshotMismatchException), $"case {i} (seed {seed}): {outcome}");
        }

        output.WriteLine($"{Cases} snapshot cases: {string.Join(", ", outcomes.Select(o => $"{o.Key}={o.Value}"))}");
    }

    private static async Task<(byte[] Header, byte[][] Chunks)> WrittenAsync(ByteArrayKvCache cache, float[] logits)
    {
        var store = new InMemorySessionStore();
        await store.TryCreateAsync(new SessionRecord(Key, "m", cache.Codec, DateTimeOffset.UnixEpoch));
        var header = await SnapshotWriter.WriteAsync(store, Key, cache, "m", "fp", logits, SmallChunks, CancellationToken.None);
        var stored = await store.GetSnapshotAsync(Key) ?? throw new InvalidOperationException("no snapshot");
        var chunks = new byte[header.ChunkCount][];
        for (var i = 0; i < chunks.Length; i++)
        {
            var buffer = new byte[SmallChunks.ChunkSize];
            chunks[i] = buffer[..await store.ReadSnapshotChunkAsync(Key, stored.SnapshotId, i, buffer)];
        }

        return (stored.Header.ToArray(), chunks);
    }

    private static async Task<string> RestoreAsync(byte[] header, byte[][] chunks, ByteArrayKvCache original, float[] logits)
    {
        var store = new InMemorySessionStore();
        await store.TryCreateAsync(new SessionRecord(Key, "m", "full", DateTimeOffset.UnixEpoch));
        for (var i = 0; i < chunks.Length; i++)
        {
            await store.WriteSnapshotChunkAsync(Key, 1, i, chunks[i]);
        }

        await store.CommitSnapshotAsync(Key, 1, header);
        using var fresh = new ByteArrayKvCache("full", BytesPerToken);
        var restoredLogits = new float[Vocab];
        try
        {
            var position = await SnapshotReader.RestoreAsync(store, Key, fresh, "m", "fp", restoredLogits, SmallChunks, CancellationToken.None);

            // Accepted: it must be exactly what was written (a mutation the format cannot see is no mutation).
            return position == original.Position && fresh.State.AsSpan().SequenceEqual(original.State) && restoredLogits.AsSpan().SequenceEqual(logits)
                ? "restored"
                : $"accepted a wrong snapshot (position {position})";
        }
        catch (Exception ex) when (ex is SnapshotCorruptException or SnapshotMismatchException)
        {
            return ex.GetType().Name;
        }
        catch (Exception ex)
        {
            return ex.ToString();
        }
    }
}
