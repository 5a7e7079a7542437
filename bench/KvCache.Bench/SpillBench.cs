using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using KvCache.Bench.Spill;
using KvCache.Contracts.Snapshots;
using KvCache.Silo.Snapshots;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using KvCache.Testing.Redis;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace KvCache.Bench;

/// <summary>
/// Spill and restore of a session's cache through Redis, against raw pipelined SET/GET of the same bytes in
/// the same chunks on the same server in the same run:
///   spill [--mib 256] [--chunk-kib 1024] [--in-flight 8] [--runs 3] [--connections 2]
/// Both sides use StackExchange.Redis with the same connections, chunk size and window: the ratio is what
/// <see cref="RedisSessionStore"/> adds (per-chunk tracking script and TTL, header and commit, XXH64, logits).
/// </summary>
public static class SpillBench
{
    // The benchmark model's full f32 cache (DESIGN.md) and vocabulary.
    private const long BytesPerToken = 73_728;
    private const int Vocab = 32_000;

    public static async Task<int> RunAsync(string[] args)
    {
        int mib = IntOption(args, "--mib", 256);
        int chunkKib = IntOption(args, "--chunk-kib", 1024);
        int inFlight = IntOption(args, "--in-flight", 8);
        int runs = IntOption(args, "--runs", 3);
        int connections = IntOption(args, "--connections", new RedisStoreOptions().Connections);
        int chunkSize = chunkKib * 1024;
        if (mib <= 0 || chunkSize <= 0 || chunkSize > SnapshotHeader.MaxChunkSize || inFlight <= 0 || runs <= 0 || connections is <= 0 or > 16)
        {
            Console.Error.WriteLine($"spill: need --mib > 0, 0 < --chunk-kib <= {SnapshotHeader.MaxChunkSize / 1024}, --in-flight > 0, --runs > 0, 0 < --connections <= 16");
            return 2;
        }

        int position = (int)((long)mib * (1 << 20) / BytesPerToken);
        using var cache = new NativeKvCache("full", BytesPerToken, position);
        cache.Fill(position, seed: 1);
        using var restored = new NativeKvCache("full", BytesPerToken, position);
        float[] logits = [.. Enumerable.Range(0, Vocab).Select(i => MathF.Sin(i))];
        long payload = cache.StateLength + Vocab * sizeof(float);

        await using var redis = await RedisServer.StartAsync(new RedisServerOptions { FirstPort = 46000, LastPort = 46999 });
        Console.WriteLine($"redis-server {redis.Endpoint}; cache {position} tokens x {BytesPerToken} B = {cache.StateLength / (double)(1 << 20):F1} MiB " +
                          $"+ {Vocab} logits; chunks {chunkKib} KiB, {inFlight} in flight, {connections} connections, best of {runs}");

        // The raw baseline talks to the same server over as many StackExchange.Redis connections as the store spreads
        // its operations over, the chunks dealt out in turn as the store does.
        var storeOptions = new RedisStoreOptions { Endpoint = redis.Endpoint, Connections = connections };
        await using var raw = new RawRedis(storeOptions.ToConfigurationOptions(), connections);
        double rawSetNew = double.MaxValue, rawSetOverwrite = double.MaxValue, rawGet = double.MaxValue, spill = double.MaxValue, restore = double.MaxValue;
        for (int run = 0; run < runs; run++)
        {
            // Fresh keys every run, the previous run's deleted (untimed): Redis allocates memory as it does for
            // a new snapshot, whose chunks are new keys too.
            rawSetNew = Math.Min(rawSetNew, await TimeAsync(() => RawSetAsync(raw, cache, $"raw:{run}:", chunkSize, inFlight)));
            if (run > 0)
            {
                await DeleteAsync(raw, $"raw:{run - 1}:", cache.StateLength, chunkSize);
            }
        }

        string last = $"raw:{runs - 1}:";
        for (int run = 0; run < runs; run++)
        {
            rawSetOverwrite = Math.Min(rawSetOverwrite, await TimeAsync(() => RawSetAsync(raw, cache, last, chunkSize, inFlight)));
            rawGet = Math.Min(rawGet, await TimeAsync(() => RawGetAsync(raw, restored, last, cache.StateLength, chunkSize, inFlight)));
        }

        Verify(cache, restored, "raw GET");
        await raw.FlushAllAsync();

        var snapshots = new SnapshotOptions { ChunkSize = chunkSize, MaxInFlight = inFlight };
        await using var storeConnection = new RedisConnection(Options.Create(storeOptions));
        var store = new RedisSessionStore(storeConnection, Options.Create(storeOptions));
        var key = new SessionKey("bench", "spill");
        await store.TryCreateAsync(new SessionRecord(key, "bench-model", "full", DateTimeOffset.UtcNow));
        var restoredLogits = new float[Vocab];
        for (int run = 0; run < runs; run++)
        {
            spill = Math.Min(spill, await TimeAsync(() => SnapshotWriter.WriteAsync(store, key, cache, "bench-model", "fp", logits, snapshots, CancellationToken.None).AsTask()));
            restore = Math.Min(restore, await TimeAsync(() => SnapshotReader.RestoreAsync(store, key, restored, "bench-model", "fp", restoredLogits, snapshots, CancellationToken.None).AsTask()));
        }

        Verify(cache, restored, "restore");
        if (!logits.AsSpan().SequenceEqual(restoredLogits))
        {
            throw new InvalidOperationException("Restored logits differ.");
        }

        double checksum = await TimeAsync(() => Task.FromResult(Checksum(cache)));
        double rawBytes = cache.StateLength;
        Console.WriteLine();
        Console.WriteLine($"{"path",-34} {"GB/s",8} {"ratio",8}");
        Print("raw SET, new keys (baseline)", rawBytes / rawSetNew, null);
        Print("raw SET, overwriting keys", rawBytes / rawSetOverwrite, null);
        Print("raw GET into memory (baseline)", rawBytes / rawGet, null);
        Print("spill: SnapshotWriter", payload / spill, payload / spill / (rawBytes / rawSetNew));
        Print("restore: SnapshotReader", payload / restore, payload / restore / (rawBytes / rawGet));
        Print("XXH64 alone (one core)", rawBytes / checksum, null);
        Console.WriteLine("ratio = snapshot path / raw baseline of the same direction (a spill writes new keys)");
        if (File.Exists("/proc/loadavg"))
        {
            Console.WriteLine($"load average (1, 5, 15 min): {string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3))} on {Environment.ProcessorCount} cores");
        }
        return 0;
    }

    private static async Task DeleteAsync(RawRedis raw, string prefix, long length, int chunkSize)
    {
        int chunks = SnapshotHeader.ChunksFor(length, chunkSize);
        await Task.WhenAll(Enumerable.Range(0, chunks).Select(i => raw.Next().KeyDeleteAsync(prefix + i.ToString(CultureInfo.InvariantCulture))));
    }

    private static async Task RawSetAsync(RawRedis raw, NativeKvCache source, string prefix, int chunkSize, int inFlight)
    {
        var writes = new Queue<(Task<bool> Set, byte[] Buffer)>();
        int chunks = SnapshotHeader.ChunksFor(source.StateLength, chunkSize);
        for (int i = 0; i < chunks; i++)
        {
            if (writes.Count == inFlight)
            {
                await Complete(writes.Dequeue());
            }

            // Copied out of the cache as the snapshot writer does, so both paths move the same bytes the same way.
            long offset = (long)i * chunkSize;
            int length = (int)Math.Min(chunkSize, source.StateLength - offset);
            byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
            source.ReadState(offset, buffer.AsSpan(0, length));
            var set = raw.Next().StringSetAsync(prefix + i.ToString(CultureInfo.InvariantCulture), (ReadOnlyMemory<byte>)buffer.AsMemory(0, length));
            writes.Enqueue((set, buffer));
        }

        while (writes.Count > 0)
        {
            await Complete(writes.Dequeue());
        }

        static async Task Complete((Task<bool> Set, byte[] Buffer) item)
        {
            // The buffer goes back only after the SET's reply: until then the library may still be writing it.
            await item.Set;
            ArrayPool<byte>.Shared.Return(item.Buffer);
        }
    }

    private static async Task RawGetAsync(RawRedis raw, NativeKvCache destination, string prefix, long length, int chunkSize, int inFlight)
    {
        destination.BeginRestore((int)(length / BytesPerToken));
        var reads = new Queue<(Task<Lease<byte>?> Get, long Offset)>();
        int chunks = SnapshotHeader.ChunksFor(length, chunkSize);
        for (int i = 0; i < chunks; i++)
        {
            if (reads.Count == inFlight)
            {
                await Complete(reads.Dequeue(), destination);
            }

            // A pooled lease, copied once into the cache, as the session store reads a chunk.
            reads.Enqueue((raw.Next().StringGetLeaseAsync(prefix + i.ToString(CultureInfo.InvariantCulture)), (long)i * chunkSize));
        }

        while (reads.Count > 0)
        {
            await Complete(reads.Dequeue(), destination);
        }

        static async Task Complete((Task<Lease<byte>?> Get, long Offset) item, NativeKvCache destination)
        {
            using var lease = await item.Get ?? throw new InvalidOperationException($"raw GET: chunk at {item.Offset} is missing.");
            destination.WriteState(item.Offset, lease.Span);
        }
    }

    private static ulong Checksum(NativeKvCache cache)
    {
        var hash = new XxHash64();
        for (long offset = 0; offset < cache.StateLength; offset += 1 << 20)
        {
            hash.Append(cache.Span(offset, (int)Math.Min(1 << 20, cache.StateLength - offset)));
        }

        return hash.GetCurrentHash();
    }

    private static async Task<double> TimeAsync<T>(Func<Task<T>> action)
    {
        var watch = Stopwatch.StartNew();
        await action();
        return watch.Elapsed.TotalSeconds;
    }

    private static async Task<double> TimeAsync(Func<Task> action)
    {
        var watch = Stopwatch.StartNew();
        await action();
        return watch.Elapsed.TotalSeconds;
    }

    private static void Verify(NativeKvCache expected, NativeKvCache actual, string what)
    {
        for (long offset = 0; offset < expected.StateLength; offset += 1 << 20)
        {
            int n = (int)Math.Min(1 << 20, expected.StateLength - offset);
            if (!expected.Span(offset, n).SequenceEqual(actual.Span(offset, n)))
            {
                throw new InvalidOperationException($"{what}: bytes differ near offset {offset}.");
            }
        }
    }

    private static void Print(string path, double bytesPerSecond, double? ratio) =>
        Console.WriteLine($"{path,-34} {bytesPerSecond / 1e9,8:F2} {(ratio is { } r ? r.ToString("F2", CultureInfo.InvariantCulture) : "-"),8}");

    private static int IntOption(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], CultureInfo.InvariantCulture, out int value) ? value : fallback;
    }

    /// <summary>Plain StackExchange.Redis multiplexers (admin commands allowed, for FLUSHALL), used in turn.</summary>
    private sealed class RawRedis : IAsyncDisposable
    {
        private readonly ConnectionMultiplexer[] _multiplexers;
        private readonly IDatabase[] _databases;
        private int _next;

        public RawRedis(ConfigurationOptions configuration, int connections)
        {
            configuration.AllowAdmin = true;
            configuration.ClientName = "kvcache-bench-raw";
            _multiplexers = [.. Enumerable.Range(0, connections).Select(_ => ConnectionMultiplexer.Connect(configuration.Clone()))];
            _databases = [.. _multiplexers.Select(m => m.GetDatabase())];
        }

        public IDatabase Next() => _databases[_next++ % _databases.Length];

        public Task FlushAllAsync() => _multiplexers[0].GetServers()[0].FlushAllDatabasesAsync();

        public async ValueTask DisposeAsync()
        {
            foreach (var multiplexer in _multiplexers)
            {
                await multiplexer.DisposeAsync();
            }
        }
    }
}
