using KvCache.GpuWorker;
using KvCache.GpuWorker.Batching;
using KvCache.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Models;

/// <summary>The models this silo has loaded, by id.</summary>
public sealed class ModelCatalog : IDisposable
{
    /// <summary>Id of the built-in chat model, trained by tools/demo-model/train.py and shipped in the build output.</summary>
    public const string ChatModelId = "demo-chat";

    /// <summary>Id of the built-in random model (the generated directory's name).</summary>
    public const string DemoModelId = "demo-llama";

    private const ulong DemoModelSeed = 20241122;

    private readonly Dictionary<string, ILanguageModel> _models = new(StringComparer.Ordinal);
    private readonly Dictionary<ILanguageModel, BatchScheduler> _schedulers = [];
    private readonly Dictionary<ILanguageModel, TextModel> _text = [];
    private readonly List<ILanguageModel> _ordered = [];

    public ModelCatalog(IOptions<ModelCatalogOptions> options, ILogger<ModelCatalog> logger)
    {
        var o = options.Value;
        var directories = o.Directories.Count > 0 ? o.Directories : [BuiltInDirectory(o, logger)];
        foreach (var directory in directories)
        {
            var model = Load(directory, o);
            TextModel text;
            try
            {
                text = TextModel.Load(directory, model.Config.VocabSize, o.Text.GetValueOrDefault(model.Id));
            }
            catch (Exception e) when (IsUnservable(e))
            {
                model.Dispose();
                Dispose();
                throw Unservable(directory, e);
            }

            if (!_models.TryAdd(model.Id, model))
            {
                model.Dispose();
                Dispose();
                throw new ModelLoadException($"Two model directories have the id '{model.Id}' ({directory}); each model needs its own directory name.");
            }

            _ordered.Add(model);
            _text[model] = text;

            _schedulers[model] = new BatchScheduler(model, new BatchSchedulerOptions
            {
                GatherWindow = TimeSpan.FromMilliseconds(o.BatchGatherWindowMs),
                PrefillRowsReserved = o.PrefillRowsReserved,
            });
            ModelCatalogLog.ModelLoaded(logger, model.Id, directory, model.ParameterCount, o.WeightFormat, o.CacheFormat, model.CacheBytesTotal >> 20);
            ModelCatalogLog.TextLoaded(logger, model.Id, text.Tokenizer?.Kind ?? "none", text.Template?.Family ?? "none", string.Join(",", text.EosTokenIds));
        }

        Default = o.DefaultModel is null ? _ordered[0] : Get(o.DefaultModel)
            ?? throw new ModelLoadException($"{ModelCatalogOptions.SectionName}:DefaultModel '{o.DefaultModel}' is not among the loaded models ({string.Join(", ", _models.Keys)}).");
    }

    /// <summary>
    /// Loads the models of a silo now, before it serves: null when they loaded, else the one-line reason a model
    /// cannot be served, for the process to print and exit with. A process without a silo has none to load.
    /// </summary>
    public static string? LoadFailure(IServiceProvider services)
    {
        try
        {
            _ = services.GetService(typeof(ModelCatalog));
            return null;
        }
        catch (ModelLoadException e)
        {
            return e.Message;
        }
    }

    private LlamaModel Load(string directory, ModelCatalogOptions o)
    {
        try
        {
            return LlamaModel.Load(directory, new ModelLoadOptions
            {
                CacheBudgetBytes = (long)o.CacheBudgetMiB << 20,
                ComputeThreads = o.ComputeThreads == 0 ? Environment.ProcessorCount : o.ComputeThreads,
                WeightFormat = o.WeightFormat,
                CacheFormat = o.CacheFormat,
            });
        }
        catch (Exception e) when (IsUnservable(e))
        {
            // The models loaded so far are freed: the process is about to stop.
            Dispose();
            throw Unservable(directory, e);
        }
    }

    /// <summary>What a model directory's files (weights, config, tokenizer) throw when they cannot be served.</summary>
    private static bool IsUnservable(Exception e) =>
        e is IOException or InvalidDataException or NotSupportedException or ArgumentException or FormatException or System.Text.Json.JsonException or UnauthorizedAccessException;

    private static ModelLoadException Unservable(string directory, Exception e) =>
        new($"Model directory '{directory}' cannot be served: {e.Message.ReplaceLineEndings(" ")}", e);

    public ILanguageModel Default { get; }

    public IReadOnlyList<ILanguageModel> All => _ordered;

    public ILanguageModel? Get(string id) => _models.GetValueOrDefault(id);

    /// <summary>What the model's directory says about text (tokenizer, chat template, end-of-sequence ids).</summary>
    public TextModel Text(ILanguageModel model) => _text[model];

    /// <summary>The scheduler every forward pass of <paramref name="model"/> goes through.</summary>
    public BatchScheduler Scheduler(ILanguageModel model) => _schedulers[model];

    public void Dispose()
    {
        foreach (var model in _ordered)
        {
            _schedulers[model].Dispose();
            model.Dispose();
        }
    }

    /// <summary>The directory of the model <see cref="ModelCatalogOptions.BuiltIn"/> selects.</summary>
    /// <exception cref="FileNotFoundException">The chat model is not in the build output.</exception>
    private static string BuiltInDirectory(ModelCatalogOptions options, ILogger logger)
    {
        if (options.BuiltIn == BuiltInModel.Random)
        {
            return EnsureRandomModel(options.DemoModelDirectory, logger);
        }

        var directory = Path.Combine(AppContext.BaseDirectory, "models", ChatModelId);
        var weights = Path.Combine(directory, "model.safetensors");
        return File.Exists(weights)
            ? directory
            : throw new FileNotFoundException($"The built-in chat model is not in the build output ({weights} is missing): serve Models:Directories or set Models:BuiltIn=Random.", weights);
    }

    /// <summary>
    /// Generates the random model once. Several processes may start at the same time, so each writes a private
    /// folder and renames it into place; the generator is deterministic, so whichever rename wins is the same model.
    /// </summary>
    private static string EnsureRandomModel(string? parent, ILogger logger)
    {
        parent ??= Path.Combine(Path.GetTempPath(), "kvcache-models");
        var directory = Path.Combine(parent, DemoModelId);
        if (File.Exists(Path.Combine(directory, "model.safetensors")))
        {
            return directory;
        }

        Directory.CreateDirectory(parent);
        var staging = Path.Combine(parent, $".{DemoModelId}.{Environment.ProcessId}.{Guid.NewGuid():N}");
        ModelGenerator.Write(staging, ModelConfig.Demo, DemoModelSeed);
        try
        {
            Directory.Move(staging, directory);
            ModelCatalogLog.RandomModelGenerated(logger, directory);
        }
        catch (IOException) when (File.Exists(Path.Combine(directory, "model.safetensors")))
        {
            Directory.Delete(staging, recursive: true);
        }

        return directory;
    }
}

/// <summary>A configured model cannot be served (unsupported dtype, a format its codecs do not allow, a broken
/// checkpoint); the message says which and why, in one line.</summary>
public sealed class ModelLoadException(string message, Exception? inner = null) : Exception(message, inner);

internal static partial class ModelCatalogLog
{
    [LoggerMessage(1, LogLevel.Information, "Loaded model {ModelId} from {Directory}: {Parameters} parameters, {WeightFormat} linear weights, {CacheMiB} MiB of {CacheFormat} KV-cache memory")]
    public static partial void ModelLoaded(ILogger logger, string modelId, string directory, long parameters, WeightFormat weightFormat, KvCacheFormat cacheFormat, long cacheMiB);

    [LoggerMessage(3, LogLevel.Information, "Model {ModelId} text: tokenizer {Tokenizer}, chat template {ChatTemplate}, end-of-sequence ids [{EosTokenIds}]")]
    public static partial void TextLoaded(ILogger logger, string modelId, string tokenizer, string chatTemplate, string eosTokenIds);

    [LoggerMessage(2, LogLevel.Information, "Generated the built-in random model in {Directory}")]
    public static partial void RandomModelGenerated(ILogger logger, string directory);
}
