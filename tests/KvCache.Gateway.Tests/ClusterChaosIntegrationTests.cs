using Grpc.Core;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// Orleans silo processes stopped (SIGTERM, drain) and killed (SIGKILL) at random, and started again, under a light decode load
/// through the gateway: every session's token log ends intact and decodable. Runs for
/// <c>KVCACHE_CHAOS_SECONDS</c> (default 60).
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class ClusterChaosIntegrationTests : IAsyncLifetime
{
    private const int Sessions = 6;
    private const int TokensPerTurn = 4;
    private static readonly int[] Prompt = Enumerable.Range(0, 16).Select(i => (i * 331 + 17) % 8192).ToArray();

    private ProcessCluster _cluster = null!;

    public async Task InitializeAsync() => _cluster = await ProcessCluster.StartAsync(silos: 3, ["--Models:CacheBudgetMiB=1024"]);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Random_stops_and_kills_of_silos_under_load_leave_every_token_log_intact_and_decodable()
    {
        var seconds = int.TryParse(Environment.GetEnvironmentVariable("KVCACHE_CHAOS_SECONDS"), out var s) ? s : 60;
        var client = _cluster.Gateway.Client;
        for (var i = 0; i < Sessions; i++)
        {
            await client.CreateSessionAsync(new CreateSessionRequest { SessionId = $"c{i}" });
            await client.AppendAsync(new AppendRequest { SessionId = $"c{i}", TokenIds = { Prompt } });
        }

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var seen = Enumerable.Range(0, Sessions).Select(_ => new List<DecodeEvent>()).ToArray();
        var load = Enumerable.Range(0, Sessions).Select(i => ConverseAsync($"c{i}", seen[i], stop.Token)).ToArray();
        var random = new Random(4);
        var actions = new List<string>();
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromSeconds(3 + random.Next(5)));
            var running = _cluster.Silos.Where(x => x.IsRunning).ToList();
            if (running.Count > 1 && random.Next(3) > 0)
            {
                // Stop or kill 1 or 2 of them, never the last one.
                foreach (var victim in running.OrderBy(_ => random.Next()).Take(1 + random.Next(Math.Min(2, running.Count - 1))))
                {
                    var kill = random.Next(2) == 0;
                    actions.Add($"{(kill ? "kill" : "stop")} {victim.Name}");
                    await (kill ? victim.KillAsync() : victim.StopAsync());
                }
            }
            else
            {
                actions.Add($"start {(await _cluster.AddSiloAsync()).Name}");
            }
        }

        var turns = await Task.WhenAll(load);

        // Every session's log: the prompt, then exactly the tokens its client saw, each once, in order.
        for (var i = 0; i < Sessions; i++)
        {
            var log = await SessionLogs.ReadAsync(_cluster.RedisEndpoint, "dev", $"c{i}");
            var count = log.Length;
            Assert.Equal(Prompt, log[..Prompt.Length]);
            Assert.Equal(Enumerable.Range(Prompt.Length, seen[i].Count).Select(p => (long)p), seen[i].Select(e => e.Position));
            Assert.Equal(log[Prompt.Length..].Take(seen[i].Count), seen[i].Select(e => e.TokenId));
            Assert.True(count - Prompt.Length - seen[i].Count < TokensPerTurn, $"c{i}: the log holds {count} tokens, the client saw {seen[i].Count}");
            Assert.True(turns[i] > 0, $"c{i} completed no turn; chaos: {string.Join(", ", actions)}");
        }

        // The last chaos action may have just killed the silo holding a session: like any client, the check retries
        // UNAVAILABLE with the same request id until the cluster has noticed (bounded, far above the failover time).
        for (var i = 0; i < Sessions; i++)
        {
            var last = new List<DecodeEvent>();
            using var settle = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var request = new DecodeRequest { SessionId = $"c{i}", MaxTokens = 2, Sampling = new SamplingParams { Temperature = 0 }, RequestId = $"final-c{i}" };
            await DecodeWithRetriesAsync(request, last, settle.Token);
            Assert.Equal(2, last.Count);
        }
    }

    /// <summary>
    /// Greedy turns with a request id until stopped; a failed turn is retried with the same id until it completes,
    /// so the client never loses or repeats a token. Returns the turns completed.
    /// </summary>
    private async Task<int> ConverseAsync(string id, List<DecodeEvent> seen, CancellationToken stop)
    {
        var turns = 0;
        while (!stop.IsCancellationRequested)
        {
            var request = new DecodeRequest
            {
                SessionId = id,
                MaxTokens = TokensPerTurn,
                Sampling = new SamplingParams { Temperature = 0 },
                RequestId = Guid.NewGuid().ToString("N"),
            };
            await DecodeWithRetriesAsync(request, seen, CancellationToken.None);
            turns++;

            // A light load: a chat turn now and then, so sessions stay within one silo's cache budget for long runs.
            await Task.Delay(250, CancellationToken.None);
        }

        return turns;
    }

    /// <summary>
    /// Runs one Decode request to its end, retrying it with the same request id after a failure; tokens a retry replays
    /// that were already received are skipped, so <paramref name="seen"/> gets each token once. Gives up (throws) only
    /// when <paramref name="giveUp"/> fires.
    /// </summary>
    private async Task DecodeWithRetriesAsync(DecodeRequest request, List<DecodeEvent> seen, CancellationToken giveUp)
    {
        var received = 0;
        while (true)
        {
            try
            {
                using var call = _cluster.Gateway.Client.Decode(request);
                var replay = 0;
                while (await call.ResponseStream.MoveNext())
                {
                    // A retried request replays its earlier tokens first: those this client has are skipped.
                    if (replay++ < received)
                    {
                        continue;
                    }

                    seen.Add(call.ResponseStream.Current);
                    received++;
                }

                return;
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unknown or StatusCode.Aborted
                && !giveUp.IsCancellationRequested)
            {
                // Every silo may be down for a moment: the same request continues once one is back.
                await Task.Delay(200, CancellationToken.None);
            }
        }
    }
}
