using KvCache.GpuWorker.Internal;

namespace KvCache.GpuWorker.Tests;

/// <summary>Calibration from given token ids (real text) instead of generated ones.</summary>
public sealed class CalibrationIdsUnitTests : IDisposable
{
    private static readonly ModelConfig Config = SvdGqaModels.Source;
    private readonly TempModel _model = TestModels.Generate(Config, seed: 5);
    private readonly DirectoryInfo _out = Directory.CreateTempSubdirectory("kvcache-calibration-ids-");

    public void Dispose()
    {
        _model.Dispose();
        _out.Delete(recursive: true);
    }

    // The ids the converters generate themselves: given explicitly, they must give the very same result.
    private static int[] Generated(int count, long seed)
    {
        var rng = new SplitMix64((ulong)seed);
        return Enumerable.Range(0, count).Select(_ => (int)(rng.Next() % (ulong)Config.VocabSize)).ToArray();
    }

    [Fact]
    public void Svd_gqa_given_the_generated_ids_writes_the_same_model_and_refuses_too_few()
    {
        var options = new SvdGqaOptions { Ratio = 0.5, CalibrationTokens = 300, SequenceLength = 128, ComputeThreads = 2 };
        string generated = Path.Combine(_out.FullName, "generated"), given = Path.Combine(_out.FullName, "given");
        SvdGqaConverter.Convert(_model.Directory, generated, options);
        SvdGqaConverter.Convert(_model.Directory, given, options with { CalibrationIds = Generated(300, options.CalibrationSeed) });
        Assert.Equal(File.ReadAllBytes(Path.Combine(generated, "model.safetensors")), File.ReadAllBytes(Path.Combine(given, "model.safetensors")));

        var text = options with { CalibrationIds = Enumerable.Range(0, 300).Select(i => "calibration text "[i % 17]).Select(c => (int)c).ToArray() };
        SvdGqaConverter.Convert(_model.Directory, Path.Combine(_out.FullName, "text"), text);
        Assert.NotEqual(File.ReadAllBytes(Path.Combine(generated, "model.safetensors")), File.ReadAllBytes(Path.Combine(_out.FullName, "text", "model.safetensors")));
        Assert.ThrowsAny<ArgumentException>(() => SvdGqaConverter.Convert(
            _model.Directory, Path.Combine(_out.FullName, "short"), options with { CalibrationIds = new int[299] }));
    }

    [Fact]
    public void Fourier_given_the_generated_ids_chooses_the_same_dims_and_refuses_too_few()
    {
        var options = new FourierCalibrationOptions { DimsFraction = 0.25, Frequencies = 8, Window = 32, CalibrationTokens = 200, ComputeThreads = 2 };
        string generated = FourierCalibrator.Calibrate(_model.Directory, options).ToJson();
        string given = FourierCalibrator.Calibrate(_model.Directory, options with { CalibrationIds = Generated(200, options.CalibrationSeed) }).ToJson();
        Assert.Equal(generated, given);
        Assert.ThrowsAny<ArgumentException>(() => FourierCalibrator.Calibrate(_model.Directory, options with { CalibrationIds = new int[199] }));
    }
}
