using System.ComponentModel.DataAnnotations;
using KvCache.GpuWorker;
using KvCache.Text;

namespace KvCache.Silo.Models;

/// <summary>Which models a silo serves (section <c>Models</c>).</summary>
public sealed class ModelCatalogOptions
{
    public const string SectionName = "Models";

    /// <summary>
    /// Directories holding a Hugging Face <c>config.json</c> + <c>model.safetensors</c>; the directory name is the
    /// model id. When empty, the silo serves the built-in model <see cref="BuiltIn"/> names.
    /// </summary>
    public List<string> Directories { get; set; } = [];

    /// <summary>
    /// Per-model text settings, by model id (<c>Models:Text:&lt;id&gt;:Tokenizer</c> = auto | none | byte,
    /// <c>Models:Text:&lt;id&gt;:ChatTemplate</c> = a template family or none), overriding what the directory says.
    /// </summary>
    public Dictionary<string, TextModelOptions> Text { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The model served when <see cref="Directories"/> is empty.</summary>
    public BuiltInModel BuiltIn { get; set; } = BuiltInModel.Chat;

    /// <summary>Where the built-in random model is generated (default: a folder under the system temp directory).</summary>
    public string? DemoModelDirectory { get; set; }

    /// <summary>Model used when CreateSession names none (default: the first one).</summary>
    public string? DefaultModel { get; set; }

    /// <summary>KV-cache memory reserved per model, in MiB.</summary>
    [Range(1, 1 << 20)]
    public int CacheBudgetMiB { get; set; } = 512;

    /// <summary>Precision of the linear weights: Bf16 halves the bytes a decode step reads (exact for bf16 checkpoints).</summary>
    public WeightFormat WeightFormat { get; set; } = WeightFormat.F32;

    /// <summary>
    /// Precision of the KV caches: Bf16 halves a session's memory and the cache bytes a decode step reads (every codec
    /// but fourier: a fourier-calibrated model then fails to load, and plain models drop the fourier codec).
    /// Snapshots are only restored by silos with the same setting; others rebuild sessions from their token logs.
    /// </summary>
    public KvCacheFormat CacheFormat { get; set; } = KvCacheFormat.F32;

    /// <summary>Threads one forward pass may use (0 = all cores).</summary>
    [Range(0, 1024)]
    public int ComputeThreads { get; set; }

    /// <summary>
    /// After a batched decode pass, how long the model waits for the sessions it served to send their next step
    /// before running a pass without them (bounds the latency batching adds).
    /// </summary>
    [Range(0.0, 100.0)]
    public double BatchGatherWindowMs { get; set; } = 2;

    /// <summary>Rows of each pass kept for prompt chunks while a prompt waits, so decoding cannot starve prefill.</summary>
    [Range(0, 63)]
    public int PrefillRowsReserved { get; set; } = 16;
}

/// <summary>The built-in models (setting <c>Models:BuiltIn</c>).</summary>
public enum BuiltInModel
{
    /// <summary>
    /// "demo-chat": a 3.9M-parameter Llama trained on Debian's fortunes, with a SentencePiece tokenizer and a ChatML
    /// template (models/demo-chat, copied into the build output); its replies are words.
    /// </summary>
    Chat,

    /// <summary>
    /// "demo-llama": a random model generated on first use (vocabulary 512, no tokenizer), whose tokens mean nothing;
    /// the tests and benches use it, since their expectations are its outputs.
    /// </summary>
    Random,
}
