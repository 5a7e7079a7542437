using System.Text.Json;

namespace KvCache.GpuWorker;

/// <summary>
/// How a model was converted by SVD-GQA (Yu et al. 2024), stored in config.json as
/// <c>"kv_compression": {"method": "svd-gqa", "ratio", "group_size", "rank", "calibration_tokens", "calibration_seed"}</c>.
/// </summary>
/// <remarks>
/// Each group of <see cref="GroupSize"/> (t) consecutive KV heads of a layer is compressed to one cached vector of
/// <see cref="Rank"/> (d) floats for keys and one for values, d = ratio · t · head_dim, so the cache holds
/// ratio × the full cache. At d = t · head_dim (ratio 1) the conversion is exact up to f32 rounding.
/// </remarks>
public sealed record SvdGqaConfig
{
    public const string Method = "svd-gqa";

    /// <summary>Cache size relative to the full cache (d / (t · head_dim)).</summary>
    public required double Ratio { get; init; }

    /// <summary>KV heads per group (t).</summary>
    public required int GroupSize { get; init; }

    /// <summary>Dimensions kept per group for keys and for values (d).</summary>
    public required int Rank { get; init; }

    /// <summary>Calibration tokens the bases were computed from (informational).</summary>
    public int CalibrationTokens { get; init; }

    /// <summary>Seed of the generated calibration token ids (informational).</summary>
    public long CalibrationSeed { get; init; }

    internal void Validate(ModelConfig model)
    {
        if (GroupSize <= 0 || model.NumKeyValueHeads % GroupSize != 0)
        {
            throw new ArgumentException($"kv_compression group_size {GroupSize} must divide num_key_value_heads {model.NumKeyValueHeads}.");
        }

        int full = GroupSize * model.HeadDim;
        if (Rank <= 0 || Rank > full)
        {
            throw new ArgumentException($"kv_compression rank {Rank} must lie in [1, group_size · head_dim = {full}].");
        }

        if (Math.Abs(Ratio * full - Rank) > 1e-6)
        {
            throw new ArgumentException($"kv_compression ratio {Ratio} disagrees with rank {Rank} / (group_size · head_dim) = {Rank / (double)full}.");
        }
    }

    internal void WriteJson(Utf8JsonWriter w)
    {
        w.WriteStartObject("kv_compression");
        w.WriteString("method", Method);
        w.WriteNumber("ratio", Ratio);
        w.WriteNumber("group_size", GroupSize);
        w.WriteNumber("rank", Rank);
        w.WriteNumber("calibration_tokens", CalibrationTokens);
        w.WriteNumber("calibration_seed", CalibrationSeed);
        w.WriteEndObject();
    }

    internal static SvdGqaConfig FromJson(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException("config.json 'kv_compression' must be an object.");
        }

        string? method = e.TryGetProperty("method", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
        if (method != Method)
        {
            throw new NotSupportedException($"kv_compression method '{method}' is not supported (only {Method}).");
        }

        return new SvdGqaConfig
        {
            Ratio = ModelConfig.OptionalDouble(e, "ratio") ?? throw new FormatException("config.json kv_compression lacks 'ratio'."),
            GroupSize = ModelConfig.RequiredInt(e, "group_size"),
            Rank = ModelConfig.RequiredInt(e, "rank"),
            CalibrationTokens = ModelConfig.OptionalInt(e, "calibration_tokens") ?? 0,
            CalibrationSeed = e.TryGetProperty("calibration_seed", out var s) && s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out long seed) ? seed : 0,
        };
    }
}
