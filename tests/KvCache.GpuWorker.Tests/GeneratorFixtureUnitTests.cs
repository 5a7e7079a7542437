namespace KvCache.GpuWorker.Tests;

public sealed class GeneratorFixtureUnitTests
{
    /// <summary>
    /// The committed fixture models are exactly what the generator writes from their seeds. With
    /// KVCACHE_FIXTURE_OUT set, the test (re)writes them there instead (see Fixtures/README.md).
    /// </summary>
    [Fact]
    public void Generator_reproduces_committed_fixture_models_bit_for_bit()
    {
        string? output = Environment.GetEnvironmentVariable("KVCACHE_FIXTURE_OUT");
        foreach (var (name, config, seed, dtype) in TestModels.Fixtures)
        {
            if (output is not null)
            {
                ModelGenerator.Write(Path.Combine(output, name), config, seed, dtype);
                continue;
            }

            using var generated = TestModels.Generate(config, seed, dtype);
            foreach (string file in (string[])["config.json", "model.safetensors"])
            {
                byte[] expected = File.ReadAllBytes(Path.Combine(TestModels.FixturesDirectory, name, file));
                byte[] actual = File.ReadAllBytes(Path.Combine(generated.Directory, file));
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{name}/{file} differs from the generator's output.");
            }
        }
    }

    [Fact]
    public void Same_seed_gives_same_bytes_and_different_seed_differs()
    {
        var config = TestModels.Fixtures[0].Config;
        using var a = TestModels.Generate(config, 11, TensorDtype.F16);
        using var b = TestModels.Generate(config, 11, TensorDtype.F16);
        using var c = TestModels.Generate(config, 12, TensorDtype.F16);
        byte[] Bytes(TempModel m) => File.ReadAllBytes(Path.Combine(m.Directory, "model.safetensors"));
        Assert.Equal(Bytes(a), Bytes(b));
        Assert.NotEqual(Bytes(a), Bytes(c));
    }
}
