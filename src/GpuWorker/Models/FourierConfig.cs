using System.Globalization;
using System.Text.Json;

namespace KvCache.GpuWorker;

/// <summary>How <see cref="FourierCalibrator"/> chooses the compressed dimensions (fourier.json <c>dims_rule</c>).</summary>
public enum FourierDimensionRule
{
    /// <summary>
    /// Rank post-RoPE keys and values by their Fourier reconstruction error and compress the same share of dims in every
    /// layer (<c>post_rope</c>; the calibrator's first rule, and what a fourier.json without dims_rule was made by).
    /// Post-RoPE, the slow-rotating key dims reconstruct best, so this compresses them.
    /// </summary>
    PostRope,

    /// <summary>
    /// The paper's rule (<c>pre_rope_layered</c>): rank keys and values by their reconstruction error before RoPE, and
    /// compress more in the first layers and less in the last (<see cref="FourierConfig.LayerSpread"/>).
    /// </summary>
    PreRopeLayered,
}

/// <summary>
/// Parameters of the "fourier" codec (FourierAttention, "Beyond Homogeneous Attention", 2025) of a plain Llama
/// model, read from <c>fourier.json</c> beside config.json (written by <c>kvcache-convert calibrate-fourier</c>):
/// <c>{"method": "fourier", "init_tokens", "window", "frequencies", "horizon", "dims_fraction",
/// "key_dims": [layer][kv_head][m_l], "value_dims": [layer][kv_head][m_l], "calibration_tokens", "calibration_seed"}</c>,
/// plus <c>"dims_rule": "pre_rope_layered", "layer_spread"</c> when the paper's rule chose the dims.
/// </summary>
/// <remarks>
/// Per layer the first <see cref="InitTokens"/> and the last <see cref="Window"/> tokens stay exact. Each middle
/// token keeps its other head dimensions exact and adds the listed m_l dimensions of every KV head (keys and
/// values separately; m_l is the same for every head and side of layer l, and may differ between layers) into 2k coefficients over an orthonormal cos/sin basis of period <see cref="Horizon"/>.
/// Without a fourier.json, <see cref="Default"/> applies: window 1024, k 32, half of the dimensions, chosen
/// without calibration as the lowest-frequency rotary pairs (they vary slowest along the sequence).
/// </remarks>
public sealed record FourierConfig
{
    public const string FileName = "fourier.json";
    public const string Method = "fourier";
    public const string PostRopeName = "post_rope";
    public const string PreRopeLayeredName = "pre_rope_layered";

    /// <summary>Exact tokens at the start of the sequence (attention sinks).</summary>
    public int InitTokens { get; init; } = 4;

    /// <summary>Exact most recent tokens (W).</summary>
    public int Window { get; init; } = 1024;

    /// <summary>Frequencies k: each compressed dimension holds 2k coefficients (k cosines, k sines).</summary>
    public int Frequencies { get; init; } = 32;

    /// <summary>Period T of the basis, in middle tokens.</summary>
    public required int Horizon { get; init; }

    /// <summary>Share of each KV head's dimensions that are compressed (m = round(fraction · head_dim)).</summary>
    public double DimsFraction { get; init; }

    /// <summary>Compressed key dimensions, [layer][kvHead] → m distinct dims in [0, head_dim).</summary>
    public required int[][][] KeyDims { get; init; }

    /// <summary>Compressed value dimensions, [layer][kvHead] → m distinct dims in [0, head_dim).</summary>
    public required int[][][] ValueDims { get; init; }

    /// <summary>Calibration tokens the dims were chosen from (0: uncalibrated defaults).</summary>
    public int CalibrationTokens { get; init; }

    public long CalibrationSeed { get; init; }

    /// <summary>The rule that chose the dims (written to fourier.json only when it is not <see cref="FourierDimensionRule.PostRope"/>).</summary>
    public FourierDimensionRule Rule { get; init; } = FourierDimensionRule.PostRope;

    /// <summary>
    /// With <see cref="FourierDimensionRule.PreRopeLayered"/>: layer l of L compresses the share
    /// <see cref="DimsFraction"/> · (1 + s · (1 − 2l / (L − 1))) of its dims (clamped to [0, 1]), s this spread, so the
    /// first layer compresses (1 + s) times the mean share, the last (1 − s) times, and the mean stays DimsFraction.
    /// </summary>
    public double LayerSpread { get; init; }

    /// <summary>Compressed dimensions per KV head and side of <paramref name="layer"/> (m_l).</summary>
    public int CompressedDimsOf(int layer) => KeyDims.Length <= layer || KeyDims[layer].Length == 0 ? 0 : KeyDims[layer][0].Length;

    /// <summary>The largest m_l over the layers.</summary>
    public int MaxCompressedDims => Enumerable.Range(0, KeyDims.Length).Select(CompressedDimsOf).DefaultIfEmpty(0).Max();

    /// <summary>m_l of every layer for a mean share <paramref name="dimsFraction"/> spread by <paramref name="spread"/> (see <see cref="LayerSpread"/>).</summary>
    public static int[] LayerCompressedCounts(ModelConfig c, double dimsFraction, double spread)
    {
        _ = CompressedCount(c, dimsFraction); // refuses a fraction outside [0, 1]
        if (!(spread >= 0 && spread <= 1))
        {
            throw new ArgumentException($"Fourier layer spread {spread} must lie in [0, 1].");
        }

        int layers = c.NumHiddenLayers;
        return Enumerable.Range(0, layers).Select(l =>
        {
            double share = layers == 1 ? dimsFraction : dimsFraction * (1 + spread * (1 - 2.0 * l / (layers - 1)));
            return CompressedCount(c, Math.Clamp(share, 0, 1));
        }).ToArray();
    }

    /// <summary>Uncalibrated parameters: the lowest-frequency rotary pairs of every head, for keys and values.</summary>
    public static FourierConfig Default(ModelConfig c, double dimsFraction = 0.5, int window = 1024, int frequencies = 32, int? horizon = null)
    {
        int m = CompressedCount(c, dimsFraction);
        int half = c.HeadDim / 2;

        // Rotary pair i (dims i, i + half) turns at theta^(-2i/d): the highest i turn slowest.
        int[] dims = Enumerable.Range(0, half).Reverse().SelectMany(i => new[] { i, i + half }).Take(m).Order().ToArray();
        int[][][] Same() => Enumerable.Range(0, c.NumHiddenLayers)
            .Select(_ => Enumerable.Range(0, c.NumKeyValueHeads).Select(_ => dims.ToArray()).ToArray()).ToArray();
        return new FourierConfig
        {
            Window = window,
            Frequencies = frequencies,
            Horizon = horizon ?? DefaultHorizon(c, window, frequencies),
            DimsFraction = dimsFraction,
            KeyDims = Same(),
            ValueDims = Same(),
        };
    }

    /// <summary>The longest middle segment the model's max positions allow (at least 2k + 1).</summary>
    public static int DefaultHorizon(ModelConfig c, int window, int frequencies) =>
        Math.Max(c.MaxPositionEmbeddings - 4 - window, 2 * frequencies + 1);

    internal static int CompressedCount(ModelConfig c, double dimsFraction)
    {
        if (!(dimsFraction >= 0 && dimsFraction <= 1))
        {
            throw new ArgumentException($"Fourier dims fraction {dimsFraction} must lie in [0, 1].");
        }

        return (int)Math.Round(dimsFraction * c.HeadDim, MidpointRounding.AwayFromZero);
    }

    /// <summary>Reads <c>fourier.json</c> from <paramref name="directory"/>, or the defaults when there is none.</summary>
    /// <exception cref="FormatException">Malformed file.</exception>
    /// <exception cref="ArgumentException">Parameters that do not fit the model.</exception>
    public static FourierConfig Load(string directory, ModelConfig model)
    {
        string path = Path.Combine(directory, FileName);
        var config = File.Exists(path) ? FromJson(File.ReadAllText(path)) : Default(model);
        config.Validate(model);
        return config;
    }

    /// <summary>Writes this configuration as <c>fourier.json</c> into <paramref name="directory"/>.</summary>
    public void Write(string directory) => File.WriteAllText(Path.Combine(directory, FileName), ToJson());

    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("method", Method);
            w.WriteNumber("init_tokens", InitTokens);
            w.WriteNumber("window", Window);
            w.WriteNumber("frequencies", Frequencies);
            w.WriteNumber("horizon", Horizon);
            w.WriteNumber("dims_fraction", DimsFraction);
            w.WriteNumber("calibration_tokens", CalibrationTokens);
            w.WriteNumber("calibration_seed", CalibrationSeed);

            // Only a non-default rule is written: a post-RoPE fourier.json keeps its text, and so the model's fingerprint
            // (which hashes it) and the snapshots bound to it.
            if (Rule == FourierDimensionRule.PreRopeLayered)
            {
                w.WriteString("dims_rule", PreRopeLayeredName);
                w.WriteNumber("layer_spread", LayerSpread);
            }

            WriteDims(w, "key_dims", KeyDims);
            WriteDims(w, "value_dims", ValueDims);
            w.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    public static FourierConfig FromJson(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var e = doc.RootElement;
            string? method = e.TryGetProperty("method", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
            if (method != Method)
            {
                throw new FormatException($"{FileName}: method '{method}' is not '{Method}'.");
            }

            return new FourierConfig
            {
                InitTokens = ModelConfig.OptionalInt(e, "init_tokens") ?? 4,
                Window = ModelConfig.RequiredInt(e, "window"),
                Frequencies = ModelConfig.RequiredInt(e, "frequencies"),
                Horizon = ModelConfig.RequiredInt(e, "horizon"),
                DimsFraction = ModelConfig.OptionalDouble(e, "dims_fraction") ?? 0,
                CalibrationTokens = ModelConfig.OptionalInt(e, "calibration_tokens") ?? 0,
                CalibrationSeed = e.TryGetProperty("calibration_seed", out var s) && s.TryGetInt64(out long seed) ? seed : 0,
                KeyDims = ReadDims(e, "key_dims"),
                ValueDims = ReadDims(e, "value_dims"),
                Rule = e.TryGetProperty("dims_rule", out var rule) && rule.ValueKind != JsonValueKind.Null
                    ? rule.GetString() switch
                    {
                        PostRopeName => FourierDimensionRule.PostRope,
                        PreRopeLayeredName => FourierDimensionRule.PreRopeLayered,
                        var other => throw new FormatException($"{FileName}: dims_rule '{other}' is not '{PostRopeName}' or '{PreRopeLayeredName}'."),
                    }
                    : FourierDimensionRule.PostRope,
                LayerSpread = ModelConfig.OptionalDouble(e, "layer_spread") ?? 0,
            };
        }
        catch (JsonException ex)
        {
            throw new FormatException($"{FileName}: {ex.Message}", ex);
        }
        catch (InvalidOperationException ex)
        {
            throw new FormatException($"{FileName}: {ex.Message}", ex);
        }
    }

    internal void Validate(ModelConfig c)
    {
        if (InitTokens < 0 || Window < 1)
        {
            throw new ArgumentException($"Fourier init_tokens {InitTokens} must be ≥ 0 and window {Window} ≥ 1.");
        }

        if (Frequencies < 1 || Horizon <= 2 * Frequencies)
        {
            throw new ArgumentException($"Fourier frequencies {Frequencies} must be ≥ 1 and horizon {Horizon} > 2 · frequencies (an orthogonal basis).");
        }

        foreach (var (name, dims) in new[] { ("key_dims", KeyDims), ("value_dims", ValueDims) })
        {
            if (dims.Length != c.NumHiddenLayers || dims.Any(l => l.Length != c.NumKeyValueHeads))
            {
                throw new ArgumentException($"Fourier {name} must be [{c.NumHiddenLayers} layers][{c.NumKeyValueHeads} KV heads][m_l].");
            }

            for (int l = 0; l < dims.Length; l++)
            {
                // Every head and side of a layer compresses the same count: the layout sizes a layer's pieces alike.
                int m = CompressedDimsOf(l);
                foreach (var head in dims[l])
                {
                    if (head.Length != m || head.Any(d => (uint)d >= (uint)c.HeadDim) || head.Distinct().Count() != m)
                    {
                        throw new ArgumentException(
                            $"Fourier {name}: every KV head of layer {l} needs {m} distinct dims in [0, {c.HeadDim}), got [{string.Join(", ", head)}].");
                    }
                }
            }
        }

        if (!(LayerSpread >= 0 && LayerSpread <= 1))
        {
            throw new ArgumentException($"Fourier layer_spread {LayerSpread} must lie in [0, 1].");
        }
    }

    private static void WriteDims(Utf8JsonWriter w, string name, int[][][] dims)
    {
        w.WriteStartArray(name);
        foreach (var layer in dims)
        {
            w.WriteStartArray();
            foreach (var head in layer)
            {
                // One line per head keeps the file readable.
                w.WriteRawValue("[" + string.Join(", ", head.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]");
            }

            w.WriteEndArray();
        }

        w.WriteEndArray();
    }

    private static int[][][] ReadDims(JsonElement e, string name) =>
        e.TryGetProperty(name, out var dims) && dims.ValueKind == JsonValueKind.Array
            ? dims.EnumerateArray().Select(l => l.EnumerateArray().Select(h => h.EnumerateArray().Select(d => d.GetInt32()).ToArray()).ToArray()).ToArray()
            : throw new FormatException($"{FileName} lacks '{name}'.");
}
