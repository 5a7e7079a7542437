using System.Text;
using System.Text.Json;

namespace KvCache.GpuWorker;

/// <summary>
/// Shape of a Llama-style decoder, read from a Hugging Face <c>config.json</c> (LlamaForCausalLM semantics).
/// </summary>
public sealed record ModelConfig
{
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    /// <summary>Per-head dimension; HiddenSize / NumAttentionHeads unless config.json says otherwise.</summary>
    public required int HeadDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public double RmsNormEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 10000.0;
    public bool TieWordEmbeddings { get; init; }
    /// <summary>config.json's <c>torch_dtype</c> (storage dtype of the checkpoint); weights are computed in f32 regardless.</summary>
    public string TorchDtype { get; init; } = "float32";
    /// <summary>
    /// Set when the model was converted by SVD-GQA (config.json <c>kv_compression</c>): its V/O projections are
    /// folded and it caches compressed keys and values, so it offers the "svd-gqa" codec instead of "full".
    /// </summary>
    public SvdGqaConfig? SvdGqa { get; init; }
    /// <summary>Set for a YOCO model (config.json <c>"architectures": ["YocoForCausalLM"]</c>); it offers the "yoco" codec.</summary>
    public YocoConfig? Yoco { get; init; }
    /// <summary>Set for a FusedKV model (<c>"architectures": ["FusedKvForCausalLM"]</c>); it offers "fusedkv" or "fusedkv-lite".</summary>
    public FusedKvConfig? FusedKv { get; init; }

    /// <summary>Small model for the embedded demo and quick tests.</summary>
    public static ModelConfig Demo { get; } = new()
    {
        VocabSize = 512,
        HiddenSize = 128,
        IntermediateSize = 344,
        NumHiddenLayers = 4,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        HeadDim = 32,
        MaxPositionEmbeddings = 4096,
    };

    /// <summary>The shared benchmark model of DESIGN.md (about 134M parameters, 512 MiB in f32).</summary>
    public static ModelConfig Benchmark { get; } = new()
    {
        VocabSize = 32000,
        HiddenSize = 768,
        IntermediateSize = 2048,
        NumHiddenLayers = 12,
        NumAttentionHeads = 12,
        NumKeyValueHeads = 12,
        HeadDim = 64,
        MaxPositionEmbeddings = 32768,
        RmsNormEps = 1e-5,
        RopeTheta = 10000.0,
    };

    /// <summary>Width of the query projection (heads × head dim).</summary>
    public int QueryDim => NumAttentionHeads * HeadDim;

    /// <summary>Width of the key and value projections (KV heads × head dim).</summary>
    public int KeyValueDim => NumKeyValueHeads * HeadDim;

    /// <summary>Number of SVD-GQA groups (KV heads / group size); 0 for a model that is not converted.</summary>
    public int SvdGqaGroups => SvdGqa is { } s ? NumKeyValueHeads / s.GroupSize : 0;

    /// <summary>Number of weights, counting a tied LM head once.</summary>
    public long ParameterCount
    {
        get
        {
            if (Yoco is not null || FusedKv is not null)
            {
                return Internal.LlamaTensors.List(this).Sum(t => t.ElementCount);
            }

            long h = HiddenSize;
            long attention = SvdGqa is { } s
                ? h * QueryDim + h * KeyValueDim + (long)SvdGqaGroups * s.Rank * (h + s.GroupSize * HeadDim) + h * NumAttentionHeads * s.Rank
                : h * QueryDim * 2 + h * KeyValueDim * 2;
            long perLayer = 2 * h + attention + 3 * h * IntermediateSize;
            long embed = (long)VocabSize * h;
            return embed + (TieWordEmbeddings ? 0 : embed) + h + NumHiddenLayers * perLayer;
        }
    }

    /// <summary>Reads a Hugging Face config.json file.</summary>
    public static ModelConfig Load(string path) => FromJson(File.ReadAllText(path));

    /// <summary>Parses Hugging Face config.json text and validates the shapes.</summary>
    /// <exception cref="FormatException">Malformed JSON, a missing field or a field of the wrong type.</exception>
    /// <exception cref="ArgumentException">Inconsistent shapes.</exception>
    /// <exception cref="NotSupportedException">A feature the engine does not implement (rope scaling, biases, another activation).</exception>
    public static ModelConfig FromJson(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"config.json is not valid JSON: {e.Message}", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException("config.json must be a JSON object.");
            }

            if (root.TryGetProperty("hidden_act", out var act) && act.ValueKind == JsonValueKind.String && act.GetString() != "silu")
            {
                throw new NotSupportedException($"hidden_act '{act.GetString()}' is not supported (only silu).");
            }

            if (root.TryGetProperty("rope_scaling", out var scaling) && scaling.ValueKind != JsonValueKind.Null)
            {
                throw new NotSupportedException("rope_scaling is not supported.");
            }

            foreach (var bias in (ReadOnlySpan<string>)["attention_bias", "mlp_bias"])
            {
                if (root.TryGetProperty(bias, out var b) && b.ValueKind == JsonValueKind.True)
                {
                    throw new NotSupportedException($"{bias} = true is not supported.");
                }
            }

            int heads = RequiredInt(root, "num_attention_heads");
            int hidden = RequiredInt(root, "hidden_size");
            int kvHeads = OptionalInt(root, "num_key_value_heads") ?? heads;
            int headDim = OptionalInt(root, "head_dim") ?? (heads > 0 ? hidden / heads : 0);
            var config = new ModelConfig
            {
                VocabSize = RequiredInt(root, "vocab_size"),
                HiddenSize = hidden,
                IntermediateSize = RequiredInt(root, "intermediate_size"),
                NumHiddenLayers = RequiredInt(root, "num_hidden_layers"),
                NumAttentionHeads = heads,
                NumKeyValueHeads = kvHeads,
                HeadDim = headDim,
                MaxPositionEmbeddings = RequiredInt(root, "max_position_embeddings"),
                RmsNormEps = OptionalDouble(root, "rms_norm_eps") ?? 1e-6,
                RopeTheta = OptionalDouble(root, "rope_theta") ?? 10000.0,
                TieWordEmbeddings = OptionalBool(root, "tie_word_embeddings") ?? false,
                TorchDtype = root.TryGetProperty("torch_dtype", out var dt) && dt.ValueKind == JsonValueKind.String
                    ? dt.GetString()!
                    : "float32",
                SvdGqa = root.TryGetProperty("kv_compression", out var kv) && kv.ValueKind != JsonValueKind.Null
                    ? SvdGqaConfig.FromJson(kv)
                    : null,
                Yoco = HasArchitecture(root, YocoConfig.Architecture) ? YocoConfig.FromJson(root) : null,
                FusedKv = HasArchitecture(root, FusedKvConfig.Architecture) ? FusedKvConfig.FromJson(root) : null,
            };
            if (OptionalInt(root, "head_dim") is null && heads > 0 && hidden % heads != 0)
            {
                throw new ArgumentException($"hidden_size {hidden} is not divisible by num_attention_heads {heads} and head_dim is not given.");
            }

            config.Validate();
            return config;
        }
    }

    /// <summary>Checks that the shapes describe a model the engine can run.</summary>
    /// <exception cref="ArgumentException">A non-positive size, heads not divisible by KV heads, or an odd head dim.</exception>
    public void Validate()
    {
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads");
        Positive(HeadDim, "head_dim");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
        {
            throw new ArgumentException($"num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}.");
        }

        if (HeadDim % 2 != 0)
        {
            throw new ArgumentException($"head_dim {HeadDim} must be even for rotary embeddings.");
        }

        if (!(RmsNormEps > 0) || !double.IsFinite(RmsNormEps))
        {
            throw new ArgumentException($"rms_norm_eps {RmsNormEps} must be a positive number.");
        }

        if (!(RopeTheta > 0) || !double.IsFinite(RopeTheta))
        {
            throw new ArgumentException($"rope_theta {RopeTheta} must be a positive number.");
        }

        if (TorchDtype is not ("float32" or "float16" or "bfloat16"))
        {
            throw new NotSupportedException($"torch_dtype '{TorchDtype}' is not supported (float32, float16, bfloat16).");
        }

        SvdGqa?.Validate(this);
        Yoco?.Validate(this);
        FusedKv?.Validate(this);
        if ((SvdGqa is null ? 0 : 1) + (Yoco is null ? 0 : 1) + (FusedKv is null ? 0 : 1) > 1)
        {
            throw new ArgumentException("SVD-GQA conversion, YOCO and FusedKV exclude each other.");
        }
    }

    /// <summary>Writes a Hugging Face config.json for LlamaForCausalLM.</summary>
    public string ToJson()
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("architectures");
            w.WriteStringValue(Yoco is not null ? YocoConfig.Architecture : FusedKv is not null ? FusedKvConfig.Architecture : "LlamaForCausalLM");
            w.WriteEndArray();
            w.WriteString("model_type", Yoco is not null ? "yoco" : FusedKv is not null ? "fusedkv" : "llama");
            w.WriteString("hidden_act", "silu");
            w.WriteNumber("vocab_size", VocabSize);
            w.WriteNumber("hidden_size", HiddenSize);
            w.WriteNumber("intermediate_size", IntermediateSize);
            w.WriteNumber("num_hidden_layers", NumHiddenLayers);
            w.WriteNumber("num_attention_heads", NumAttentionHeads);
            w.WriteNumber("num_key_value_heads", NumKeyValueHeads);
            w.WriteNumber("head_dim", HeadDim);
            w.WriteNumber("max_position_embeddings", MaxPositionEmbeddings);
            w.WriteNumber("rms_norm_eps", RmsNormEps);
            w.WriteNumber("rope_theta", RopeTheta);
            w.WriteBoolean("tie_word_embeddings", TieWordEmbeddings);
            w.WriteString("torch_dtype", TorchDtype);
            w.WriteBoolean("attention_bias", false);
            w.WriteBoolean("mlp_bias", false);
            SvdGqa?.WriteJson(w);
            Yoco?.WriteJson(w);
            FusedKv?.WriteJson(w);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan) + "\n";
    }

    private static void Positive(int value, string name)
    {
        if (value <= 0)
        {
            throw new ArgumentException($"{name} must be positive, got {value}.");
        }
    }

    private static bool HasArchitecture(JsonElement root, string name) =>
        root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array
        && a.EnumerateArray().Any(e => e.ValueKind == JsonValueKind.String && e.GetString() == name);

    internal static int RequiredInt(JsonElement root, string name) =>
        OptionalInt(root, name) ?? throw new FormatException($"config.json lacks '{name}'.");

    internal static int? OptionalInt(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v)
            ? v
            : throw new FormatException($"config.json '{name}' must be an integer, got {e.GetRawText()}.");
    }

    internal static double? OptionalDouble(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return e.ValueKind == JsonValueKind.Number
            ? e.GetDouble()
            : throw new FormatException($"config.json '{name}' must be a number, got {e.GetRawText()}.");
    }

    private static bool? OptionalBool(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new FormatException($"config.json '{name}' must be a boolean, got {e.GetRawText()}."),
        };
    }
}
