using KvCache.GpuWorker.Internal;
using System.Text;

namespace KvCache.GpuWorker.Tests;

public sealed class SafetensorsUnitTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("kvcache-st-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Theory]
    [InlineData(TensorDtype.F32)]
    [InlineData(TensorDtype.F16)]
    [InlineData(TensorDtype.BF16)]
    public void Round_trips_values_in_each_dtype(TensorDtype dtype)
    {
        string path = Path.Combine(_dir.FullName, "t.safetensors");
        var random = new Random(1);
        float[] a = Enumerable.Range(0, 1000).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray();
        float[] b = [1f, -2.5f, 65504f, 1e-3f, 0f, -0f];
        var specs = new[] { new SafetensorsTensorSpec("a", dtype, [10, 100]), new SafetensorsTensorSpec("empty", dtype, [0, 3]), new SafetensorsTensorSpec("b", dtype, [6]) };
        using (var writer = new SafetensorsWriter(path, specs, new Dictionary<string, string> { ["format"] = "pt" }))
        {
            writer.Write(a.AsSpan(0, 333)); // a tensor may arrive in pieces, and pieces may span tensors
            writer.Write([.. a.AsSpan(333), .. b]);
            writer.Complete();
        }

        using var reader = SafetensorsReader.Open(path);
        Assert.Equal("pt", reader.Metadata["format"]);
        Assert.Equal([10, 100], reader.Tensors["a"].Shape);
        Assert.Equal(dtype, reader.Tensors["b"].Dtype);
        Assert.Equal(0, reader.Tensors["empty"].ElementCount);
        var readA = new float[a.Length];
        var readB = new float[b.Length];
        reader.ReadAsSingle("a", readA);
        reader.ReadAsSingle("b", readB);
        Assert.Equal(a.Select(x => Stored(x, dtype)), readA);
        Assert.Equal(b.Select(x => Stored(x, dtype)), readB);
        Assert.Throws<KeyNotFoundException>(() => reader.ReadAsSingle("c", readB));
        Assert.Throws<ArgumentException>(() => reader.ReadAsSingle("b", readA));
    }

    [Fact]
    public void BFloat16_rounds_to_nearest_even()
    {
        Assert.Equal(0x3F80, Bf16.FromSingle(1f));
        Assert.Equal(0x3F80, Bf16.FromSingle(BitConverter.UInt32BitsToSingle(0x3F808000))); // tie -> even
        Assert.Equal(0x3F82, Bf16.FromSingle(BitConverter.UInt32BitsToSingle(0x3F818000))); // tie -> even (up)
        Assert.Equal(0x3F81, Bf16.FromSingle(BitConverter.UInt32BitsToSingle(0x3F808001)));
    }

    [Fact]
    public void Writer_refuses_too_many_or_too_few_values()
    {
        string path = Path.Combine(_dir.FullName, "w.safetensors");
        using (var writer = new SafetensorsWriter(path, [new SafetensorsTensorSpec("a", TensorDtype.F32, [2])]))
        {
            Assert.Throws<InvalidOperationException>(() => writer.Write([1, 2, 3]));
        }

        using (var writer = new SafetensorsWriter(path, [new SafetensorsTensorSpec("a", TensorDtype.F32, [2])]))
        {
            writer.Write([1]);
            Assert.Throws<InvalidOperationException>(writer.Complete);
        }

        Assert.Throws<ArgumentException>(() => new SafetensorsWriter(path, [new("a", TensorDtype.F32, [1]), new("a", TensorDtype.F32, [1])]));
    }

    [Theory]
    [InlineData("short", typeof(InvalidDataException))]
    [InlineData("header-too-long", typeof(InvalidDataException))]
    [InlineData("not-json", typeof(InvalidDataException))]
    [InlineData("not-object", typeof(InvalidDataException))]
    [InlineData("missing-offsets", typeof(InvalidDataException))]
    [InlineData("out-of-range", typeof(InvalidDataException))]
    [InlineData("size-mismatch", typeof(InvalidDataException))]
    [InlineData("negative-shape", typeof(InvalidDataException))]
    [InlineData("overlap", typeof(InvalidDataException))]
    [InlineData("int64", typeof(NotSupportedException))]
    public void Malformed_files_are_refused(string kind, Type exception)
    {
        string path = Path.Combine(_dir.FullName, kind + ".safetensors");
        byte[] data = new byte[16];
        switch (kind)
        {
            case "short":
                File.WriteAllBytes(path, [1, 2, 3]);
                break;
            case "header-too-long":
                File.WriteAllBytes(path, [.. BitConverter.GetBytes(1000UL), .. "{}"u8]);
                break;
            default:
                string header = kind switch
                {
                    "not-json" => "{\"a\": ",
                    "not-object" => "[1]",
                    "missing-offsets" => """{"a":{"dtype":"F32","shape":[2]}}""",
                    "out-of-range" => """{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}""",
                    "size-mismatch" => """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""",
                    "negative-shape" => """{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""",
                    "overlap" => """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""",
                    _ => """{"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}""",
                };
                byte[] h = Encoding.UTF8.GetBytes(header);
                File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. data]);
                break;
        }

        var e = Assert.Throws(exception, () => SafetensorsReader.Open(path).Dispose());
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
    }

    [Fact]
    public void Half_precision_model_loads_the_rounded_weights()
    {
        var config = TestModels.Fixtures[0].Config;
        using var f32 = TestModels.Generate(config, 5, TensorDtype.F32);
        using var f16 = TestModels.Generate(config, 5, TensorDtype.F16);
        using var r32 = SafetensorsReader.Open(Path.Combine(f32.Directory, "model.safetensors"));
        using var r16 = SafetensorsReader.Open(Path.Combine(f16.Directory, "model.safetensors"));
        foreach (var (name, info) in r32.Tensors)
        {
            var full = new float[info.ElementCount];
            var half = new float[info.ElementCount];
            r32.ReadAsSingle(name, full);
            r16.ReadAsSingle(name, half);
            Assert.Equal(full.Select(x => (float)(Half)x), half);
        }

        Assert.Equal("float16", ModelConfig.Load(Path.Combine(f16.Directory, "config.json")).TorchDtype);
        using var model = LlamaModel.Load(f16.Directory, TestModels.SmallOptions());
        Assert.Equal(config.ParameterCount, model.ParameterCount);
    }

    private static float Stored(float x, TensorDtype dtype) => dtype switch
    {
        TensorDtype.F32 => x,
        TensorDtype.F16 => (float)(Half)x,
        _ => BitConverter.UInt32BitsToSingle((uint)Bf16.FromSingle(x) << 16),
    };
}
