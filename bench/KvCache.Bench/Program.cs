// Benchmarks print ratios against baselines measured in the same run; they are not tests.
//   dotnet run -c Release --project bench/KvCache.Bench -- decode [--codecs full,svd-gqa,yoco,fusedkv,fourier] [--contexts 1024,8192,32768]
//                                                                 [--sessions 1,4,16,64] [--steps 8] [--memory-gib 12] [--weights f32|bf16]
//                                                                 [--cache f32|bf16] [--block-tokens 32] [--scheduler] [--capacity-gib G] [--json PATH]
//   dotnet run -c Release --project bench/KvCache.Bench -- kernels [--ops matmul,attention] [--rows 1,4,16,64] [--contexts 1024,8192] [--cached]
//   dotnet run -c Release --project bench/KvCache.Bench -- resume [--codecs full,svd-gqa,yoco,yoco-gret,fusedkv,fourier] [--contexts 8192,32768] [--weights f32|bf16] [--cache f32|bf16] [--json PATH]
//   dotnet run -c Release --project bench/KvCache.Bench -- plot --out DIR [--decode a.json,b.json] [--capacity c.json] [--resume r.json]
//   dotnet run -c Release --project bench/KvCache.Bench -- spill  [--mib 256] [--chunk-kib 1024] [--in-flight 8] [--runs 3] [--connections 2]
//   dotnet run -c Release --project bench/KvCache.Bench -- quality [--contexts 512,2048] [--tokens 16384]
//   dotnet run -c Release --project bench/KvCache.Bench -- cluster [--mib 64,256,1024] [--runs 3] [--failovers 5] [--calls 300] [--parts migration,latency,failover] [--setting Section:Key=value]
using KvCache.Bench;

return args.FirstOrDefault() switch
{
    "decode" => await DecodeBench.RunAsync(args[1..]),
    "kernels" => KernelBench.Run(args[1..]),
    "resume" => await ResumeBench.RunAsync(args[1..]),
    "plot" => PlotBench.Run(args[1..]),
    "spill" => await SpillBench.RunAsync(args[1..]),
    "cluster" => await ClusterBench.RunAsync(args[1..]),
    "quality" => await QualityBench.RunAsync(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: KvCache.Bench (decode | kernels | resume | plot | spill | quality | cluster) [options]");
    return 2;
}
