using System.Diagnostics;
using System.Text;
using KvCache.Contracts.Admin.V1;
using KvCache.Contracts.Internal.V1;
using KvCache.Contracts.V1;
using KvCache.GpuWorker;
using KvCache.Silo.Cluster.Serving;
using KvCache.Testing.Redis;
using KvCache.Transport;

namespace KvCache.Bench;

/// <summary>
/// The cluster on real processes (redis-server, two silos, a routing gateway), all measured in the same run:
///   cluster [--contexts 512,2048] [--runs 3] [--calls 300]
/// migration GB/s against the compressed (here: full f32) cache size, failover time (SIGKILL of the owner →
/// the first token from the new owner), and the gateway's added latency against calling the owning silo directly.
/// Needs src/SiloHost and src/Gateway built in Release.
/// </summary>
public static class ClusterBench
{
    private const string Secret = "bench-cluster-secret-0123456789";
    private const string IAmAlive = "00:00:00.500";
    private const string Lease = "00:00:02";

    public static async Task<int> RunAsync(string[] args)
    {
        int[] contexts = [512, 2048];
        int runs = 3, calls = 300;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--contexts": contexts = [.. args[++i].Split(',').Select(int.Parse)]; break;
                case "--runs": runs = int.Parse(args[++i]); break;
                case "--calls": calls = int.Parse(args[++i]); break;
                default:
                    Console.Error.WriteLine("usage: cluster [--contexts 512,2048] [--runs 3] [--calls 300]");
                    return 2;
            }
        }

        var root = FindRoot();
        var siloDll = Path.Combine(root, "src/SiloHost/bin/Release/net10.0/KvCache.SiloHost.dll");
        var gatewayDll = Path.Combine(root, "src/Gateway/bin/Release/net10.0/KvCache.Gateway.dll");
        if (!File.Exists(siloDll) || !File.Exists(gatewayDll))
        {
            Console.Error.WriteLine("cluster: build first: dotnet build -c Release src/SiloHost && dotnet build -c Release src/Gateway");
            return 2;
        }

        var model = Directory.CreateTempSubdirectory("kvcache-cluster-bench-");
        var config = ModelConfig.Benchmark;
        ModelGenerator.Write(model.FullName, config, seed: 1);
        long bytesPerToken = FullKvCache.BytesPerTokenFor(config);
        await using var redis = await RedisServer.StartAsync(new RedisServerOptions { FirstPort = 47000, LastPort = 47999 });
        string[] common =
        [
            $"--Spill:Redis:Endpoint={redis.Endpoint}",
            $"--Cluster:Membership:IAmAlivePeriod={IAmAlive}",
            $"--Cluster:Membership:LeaseDuration={Lease}",
            $"--Models:Directories:0={model.FullName}",
            $"--Models:CacheBudgetMiB={(contexts.Max() + 512) * bytesPerToken * 3 / (1 << 20)}",
            "--Cluster:MaxSessionsMovedPerJoin=0",
        ];
        Console.WriteLine($"cluster bench: benchmark model ({config.ParameterCount / 1e6:F0}M, full f32 cache {bytesPerToken} B/token), redis {redis.Endpoint}, lease {Lease}, heartbeat {IAmAlive}");

        var procs = new List<Child>();
        try
        {
            var a = await Child.StartAsync(siloDll, "silo-a", common, "joined the cluster");
            procs.Add(a);
            var b = await Child.StartAsync(siloDll, "silo-b", common, "joined the cluster");
            procs.Add(b);
            var gateway = await Child.StartAsync(gatewayDll, "gateway", [.. common, "--Cluster:Mode=Routed", "--Cluster:RefreshPeriod=00:00:00.250", $"--Cluster:Secret={Secret}"], "Application started");
            procs.Add(gateway);
            var client = new KvCacheGrpc.KvCacheClient(gateway.Channel.CreateCallInvoker());
            var admin = new AdminGrpc.AdminClient(gateway.Channel.CreateCallInvoker());
            while ((await client.ListModelsAsync(new ListModelsRequest())).Models.Count == 0)
            {
                await Task.Delay(100);
            }

            await Task.Delay(1000);

            // 1. Migration: the cache bytes over the time the session was unavailable. A move after a token was
            // appended writes a fresh snapshot and restores it; a move straight back finds the snapshot current and only restores.
            Console.WriteLine();
            Console.WriteLine($"| context | cache MiB | snapshot + restore s (best of {runs}) | GB/s | restore only s | GB/s | admin call s |");
            Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (var context in contexts)
            {
                var id = $"m{context}";
                await CreateAsync(client, id, context, a.Endpoint);
                double full = double.MaxValue, restoreOnly = double.MaxValue, call = double.MaxValue;
                long bytes = 0;
                for (var r = 0; r < runs; r++)
                {
                    await client.AppendAsync(new AppendRequest { SessionId = id, TokenIds = { r + 1 } });
                    var sw = Stopwatch.StartNew();
                    var there = await admin.MigrateSessionAsync(new MigrateSessionRequest { SessionId = id, TargetSilo = b.Endpoint });
                    call = Math.Min(call, sw.Elapsed.TotalSeconds);
                    var back = await admin.MigrateSessionAsync(new MigrateSessionRequest { SessionId = id, TargetSilo = a.Endpoint });
                    full = Math.Min(full, there.Seconds);
                    restoreOnly = Math.Min(restoreOnly, back.Seconds);
                    bytes = there.CacheBytes;
                }

                Console.WriteLine($"| {context} | {bytes / (double)(1 << 20):F1} | {full:F3} | {bytes / full / 1e9:F2} | {restoreOnly:F3} | {bytes / restoreOnly / 1e9:F2} | {call:F3} |");
            }

            // 2. Gateway added latency: the same calls through the gateway and straight to the owner's internal endpoint.
            await CreateAsync(client, "lat", 16, a.Endpoint);
            var owner = (await client.GetSessionAsync(new GetSessionRequest { SessionId = "lat" })).OwnerSilo == "silo-a" ? a : b;
            var direct = new SiloGrpc.SiloClient(owner.Channel.CreateCallInvoker());
            var secret = new CallOptions(SiloProtocol.Headers(Secret));
            var viaGateway = new List<double>();
            var viaSilo = new List<double>();
            for (var i = 0; i < calls + 20; i++)
            {
                var sw = Stopwatch.StartNew();
                await client.GetSessionAsync(new GetSessionRequest { SessionId = "lat" });
                var g = sw.Elapsed.TotalMilliseconds;
                sw.Restart();
                await direct.GetSessionAsync(new SessionCall { Tenant = "dev", SessionId = "lat" }, secret);
                var d = sw.Elapsed.TotalMilliseconds;
                if (i >= 20)
                {
                    viaGateway.Add(g);
                    viaSilo.Add(d);
                }
            }

            Console.WriteLine();
            Console.WriteLine($"GetSession, {calls} calls each, interleaved: gateway p50 {P(viaGateway, 50):F3} ms p99 {P(viaGateway, 99):F3} ms; owner direct p50 {P(viaSilo, 50):F3} ms p99 {P(viaSilo, 99):F3} ms; " +
                              $"added p50 {P(viaGateway, 50) - P(viaSilo, 50):F3} ms p99 {P(viaGateway, 99) - P(viaSilo, 99):F3} ms");

            // 3. Failover: SIGKILL of the owner mid-Decode (request id). Tokens already in flight still arrive, so the
            // failover time is the longest wait for a token after the kill: the new owner's first one.
            await CreateAsync(client, "fo", 64, a.Endpoint);
            using var decode = client.Decode(new DecodeRequest { SessionId = "fo", MaxTokens = 400, RequestId = "fo-1", Sampling = new SamplingParams { Temperature = 0 } });
            var received = 0;
            Stopwatch? sinceLast = null;
            double failover = 0;
            while (await decode.ResponseStream.MoveNext())
            {
                received++;
                if (sinceLast is not null)
                {
                    failover = Math.Max(failover, sinceLast.Elapsed.TotalSeconds);
                    sinceLast.Restart();
                }

                if (received == 10)
                {
                    a.Kill();
                    sinceLast = Stopwatch.StartNew();
                }
            }

            Console.WriteLine($"failover: SIGKILL of the owner after 10 tokens -> first token from the new owner after {failover:F2} s (lease {Lease}, heartbeat {IAmAlive}, gateway refresh 0.25 s); stream complete: {received} of 400 tokens");
            return 0;
        }
        finally
        {
            foreach (var p in procs)
            {
                p.Dispose();
            }

            model.Delete(recursive: true);
        }
    }

    private static async Task CreateAsync(KvCacheGrpc.KvCacheClient client, string id, int tokens, string silo)
    {
        var hinted = new CallOptions(new Metadata { { "x-kvcache-placement-hint", silo } });
        await client.CreateSessionAsync(new CreateSessionRequest { SessionId = id }, hinted);
        for (var start = 0; start < tokens; start += 4096)
        {
            var append = new AppendRequest { SessionId = id };
            append.TokenIds.AddRange(Enumerable.Range(start, Math.Min(4096, tokens - start)).Select(i => (i * 7919 + 13) % 32000));
            await client.AppendAsync(append, hinted);
        }
    }

    private static double P(List<double> values, int percentile)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(percentile / 100.0 * sorted.Length) - 1)];
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln")))
            {
                return dir.FullName;
            }
        }

        return Directory.GetCurrentDirectory();
    }

    private sealed class Child : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();

        private Child(Process process, int port)
        {
            _process = process;
            Endpoint = $"127.0.0.1:{port}";
            Channel = GrpcChannel.ForAddress(new Uri($"http://{Endpoint}"));
        }

        public string Endpoint { get; }

        public GrpcChannel Channel { get; }

        public static async Task<Child> StartAsync(string dll, string name, string[] settings, string ready)
        {
            var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            listener.Start();
            var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetDirectoryName(dll)! };
            foreach (var arg in (string[])[dll, $"--Kestrel:Endpoints:Grpc:Url=http://127.0.0.1:{port}", $"--Silo:SiloName={name}", .. settings])
            {
                start.ArgumentList.Add(arg);
            }

            start.Environment["Cluster__Secret"] = Secret;
            start.Environment["DOTNET_ENVIRONMENT"] = "Production";
            var child = new Child(Process.Start(start)!, port);
            child._process.OutputDataReceived += (_, e) => child.Append(e.Data);
            child._process.ErrorDataReceived += (_, e) => child.Append(e.Data);
            child._process.BeginOutputReadLine();
            child._process.BeginErrorReadLine();
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (!child.Printed(ready))
            {
                if (child._process.HasExited || DateTime.UtcNow > deadline)
                {
                    throw new InvalidOperationException($"{name} did not start:\n{child.Output()}");
                }

                await Task.Delay(100);
            }

            return child;
        }

        public void Kill() => _process.Kill(entireProcessTree: true);

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit();
            }

            Channel.Dispose();
            _process.Dispose();
        }

        private bool Printed(string text)
        {
            lock (_output)
            {
                return _output.ToString().Contains(text, StringComparison.Ordinal);
            }
        }

        private string Output()
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }

        private void Append(string? line)
        {
            if (line is not null)
            {
                lock (_output)
                {
                    _output.AppendLine(line);
                }
            }
        }
    }
}
