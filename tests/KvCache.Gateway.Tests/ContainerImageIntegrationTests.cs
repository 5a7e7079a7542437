using System.Globalization;
using System.Net;
using Grpc.Core;
using KvCache.Contracts.V1;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.Silo.Placement;
using KvCache.Testing.Redis;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// The published output the Dockerfiles copy (<see cref="PublishedApps"/>), run as Kubernetes runs it: Orleans silo
/// processes and a routing gateway on a real redis-server, health and metrics on a separate HTTP/1.1 endpoint.
/// Probes answer, <c>/metrics</c> reports what a decode did, and a silo stopped with SIGTERM exits 0 without
/// losing a token, even of a decode streaming through it.
/// </summary>
public sealed class ContainerImageIntegrationTests
{
    private static readonly int[] Prompt = Enumerable.Range(0, 16).Select(i => (i * 37 + 5) % 512).ToArray();

    [Fact]
    public async Task Metrics_after_a_decode_report_sessions_cache_bytes_tokens_spills_and_restores()
    {
        await using var cluster = await PublishedCluster.StartAsync(silos: 1);
        var silo = cluster.Silos[0];
        Assert.Equal(HttpStatusCode.OK, await cluster.ProbeAsync(silo.HealthPort, "/healthz/ready"));
        Assert.Equal(HttpStatusCode.OK, await cluster.ProbeAsync(silo.HealthPort, "/healthz/live"));
        Assert.Equal(HttpStatusCode.OK, await cluster.ProbeAsync(cluster.GatewayHealthPort, "/healthz/ready"));

        var client = cluster.Gateway.Client;
        await client.CreateSessionAsync(new CreateSessionRequest { SessionId = "metered" });
        await client.AppendAsync(new AppendRequest { SessionId = "metered", TokenIds = { Prompt } });
        Assert.Equal(20, (await DecodeCalls.ReadAllAsync(client.Decode(DecodeCalls.Greedy("metered", 20)))).Count);
        await client.SpillSessionAsync(new SpillSessionRequest { SessionId = "metered" });
        Assert.Equal(5, (await DecodeCalls.ReadAllAsync(client.Decode(DecodeCalls.Greedy("metered", 5)))).Count);

        var (contentType, metrics) = await cluster.ScrapeAsync(silo.HealthPort);
        Assert.StartsWith("text/plain; version=0.0.4", contentType);
        Assert.Equal(25, metrics["kvcache_tokens_decoded_total"]);
        Assert.Equal(1, metrics["kvcache_sessions_active"]);
        Assert.Equal(1, metrics["kvcache_sessions_spilled_total"]);
        Assert.Equal(1, metrics["kvcache_spill_duration_seconds_count"]);
        Assert.True(metrics["kvcache_spill_duration_seconds_sum"] > 0);
        Assert.Equal(1, metrics["kvcache_restore_duration_seconds_count"]);
        Assert.True(metrics["kvcache_restore_duration_seconds_sum"] > 0);
        Assert.Equal(0, metrics["kvcache_migration_duration_seconds_count"]);
        Assert.Equal(0, metrics["kvcache_decode_queue_depth"]);
        Assert.Equal(25, metrics["kvcache_batch_decode_rows_total{model=\"demo-llama\"}"]);
        Assert.Equal(Prompt.Length, metrics["kvcache_batch_prefill_rows_total{model=\"demo-llama\"}"]);
        Assert.Equal(26, metrics["kvcache_batch_passes_total{model=\"demo-llama\"}"]);
        var used = metrics["kvcache_cache_bytes_used{model=\"demo-llama\"}"];
        var free = metrics["kvcache_cache_bytes_free{model=\"demo-llama\"}"];
        Assert.True(used > 0, $"cache bytes used: {used}");
        Assert.Equal(64L << 20, used + free);

        var (_, gateway) = await cluster.ScrapeAsync(cluster.GatewayHealthPort);
        Assert.Equal(0, gateway["kvcache_gateway_failovers_total"]);
    }

    [Fact]
    public async Task A_silo_stopped_with_SIGTERM_exits_0_and_its_sessions_lose_no_token_even_mid_decode()
    {
        await using var cluster = await PublishedCluster.StartAsync(silos: 2);
        var client = cluster.Gateway.Client;
        var leaving = cluster.Silos[0];
        var staying = cluster.Silos[1];
        var onLeaving = new CallOptions(new Metadata { { PlacementHint.Header, leaving.Name } });
        var onStaying = new CallOptions(new Metadata { { PlacementHint.Header, staying.Name } });

        await CreateAsync(client, "twin", onStaying);
        var expected = await DecodeCalls.GreedyTokensAsync(client, "twin", 120);

        var resting = new[] { "resting-0", "resting-1", "resting-2" };
        var firstHalves = new Dictionary<string, List<DecodeEvent>>();
        foreach (var id in resting)
        {
            await CreateAsync(client, id, onLeaving);
            firstHalves[id] = await DecodeCalls.ReadAllAsync(client.Decode(DecodeCalls.Greedy(id, 40)));
        }

        await CreateAsync(client, "streaming", onLeaving);
        foreach (var id in resting.Append("streaming"))
        {
            Assert.Equal(leaving.Name, (await client.GetSessionAsync(new GetSessionRequest { SessionId = id })).OwnerSilo);
        }

        // SIGTERM lands while a decode streams through the leaving silo, as when Kubernetes rolls the pod.
        var streamed = new List<DecodeEvent>();
        Task? stopping = null;
        using (var call = client.Decode(DecodeCalls.Greedy("streaming", 120, requestId: "turn-1")))
        {
            while (await call.ResponseStream.MoveNext())
            {
                streamed.Add(call.ResponseStream.Current);
                if (streamed.Count == 10)
                {
                    stopping = leaving.StopAsync();
                }
            }
        }

        // StopAsync throws unless the process exited 0.
        await stopping!;
        Assert.Equal(expected, streamed.Select(e => e.TokenId));
        Assert.Equal(Enumerable.Range(Prompt.Length, 120).Select(p => (long)p), streamed.Select(e => e.Position));

        foreach (var id in resting)
        {
            var rest = await DecodeCalls.ReadAllAsync(client.Decode(DecodeCalls.Greedy(id, 80)));
            Assert.Equal(expected, firstHalves[id].Concat(rest).Select(e => e.TokenId));
            var session = await client.GetSessionAsync(new GetSessionRequest { SessionId = id });
            Assert.Equal(staying.Name, session.OwnerSilo);
            Assert.Equal(Prompt.Length + 120, session.Position);
        }
    }

    private static async Task CreateAsync(KvCacheClient client, string id, CallOptions options)
    {
        await client.CreateSessionAsync(new CreateSessionRequest { SessionId = id }, options);
        await client.AppendAsync(new AppendRequest { SessionId = id, TokenIds = { Prompt } }, options);
    }

    /// <summary>Published silos and a published routing gateway, each with its HTTP/1.1 health endpoint.</summary>
    private sealed class PublishedCluster : IAsyncDisposable
    {
        private readonly RedisServer _redis;
        private readonly HttpClient _http = new();

        private PublishedCluster(RedisServer redis) => _redis = redis;

        public List<SiloProcess> Silos { get; } = [];

        public GatewayProcess Gateway { get; private set; } = null!;

        public int GatewayHealthPort { get; private set; }

        public static async Task<PublishedCluster> StartAsync(int silos)
        {
            var (gatewayDirectory, siloDirectory) = await PublishedApps.GetAsync();
            var cluster = new PublishedCluster(await RedisServer.StartAsync(TestPorts.Redis));
            try
            {
                string[] common =
                [
                    $"--Spill:Redis:Endpoint={cluster._redis.Endpoint}",
                    "--Models:CacheBudgetMiB=64",
                    "--Kestrel:Endpoints:Health:Protocols=Http1",
                ];
                for (var i = 0; i < silos; i++)
                {
                    var silo = new SiloProcess($"silo-{i}", common) { AppDirectory = siloDirectory };
                    cluster.Silos.Add(silo);
                    await silo.StartAsync();
                }

                cluster.GatewayHealthPort = GatewayProcess.FreePort();
                cluster.Gateway = new GatewayProcess(
                    GatewayProcess.FreePort(),
                    [.. common, $"--Kestrel:Endpoints:Health:Url=http://127.0.0.1:{cluster.GatewayHealthPort}", "--Cluster:Mode=Routed"])
                {
                    AppDirectory = gatewayDirectory,
                };
                await cluster.Gateway.StartAsync();

                // Ready once it reaches a silo that serves a model; then a second for every silo to read the others'
                // loads (and names), so placement hints can pick any of them.
                while (await cluster.ProbeAsync(cluster.GatewayHealthPort, "/healthz/ready") != HttpStatusCode.OK)
                {
                    await Task.Delay(100);
                }

                await Task.Delay(TimeSpan.FromSeconds(1));
                return cluster;
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }
        }

        public async Task<HttpStatusCode> ProbeAsync(int port, string path)
        {
            using var response = await _http.GetAsync(new Uri($"http://127.0.0.1:{port}{path}"));
            Assert.Equal(new Version(1, 1), response.Version);
            return response.StatusCode;
        }

        /// <summary>Reads /metrics; checks every sample belongs to a family with HELP and TYPE; returns samples by series.</summary>
        public async Task<(string ContentType, Dictionary<string, double> Samples)> ScrapeAsync(int port)
        {
            using var response = await _http.GetAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
            response.EnsureSuccessStatusCode();
            var text = await response.Content.ReadAsStringAsync();
            var typed = new HashSet<string>();
            var helped = new HashSet<string>();
            var samples = new Dictionary<string, double>();
            foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = line.Split(' ');
                if (line.StartsWith("# HELP ", StringComparison.Ordinal))
                {
                    helped.Add(parts[2]);
                }
                else if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
                {
                    typed.Add(parts[2]);
                }
                else
                {
                    var series = line[..line.LastIndexOf(' ')];
                    var name = series.Split('{')[0];
                    var family = typed.Contains(name) ? name : name[..name.LastIndexOf('_')];
                    Assert.True(typed.Contains(family) && helped.Contains(family), $"{name} has no HELP/TYPE:\n{text}");
                    samples.Add(series, double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
                }
            }

            return (response.Content.Headers.ContentType!.ToString(), samples);
        }

        public async ValueTask DisposeAsync()
        {
            if (Gateway is not null)
            {
                await Gateway.DisposeAsync();
            }

            foreach (var silo in Silos)
            {
                await silo.DisposeAsync();
            }

            _http.Dispose();
            await _redis.DisposeAsync();
        }
    }
}
