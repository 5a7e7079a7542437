using KvCache.Silo.Models;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Xunit;

namespace KvCache.Silo.Tests.Models;

/// <summary>Which built-in model a silo serves when no model directory is configured.</summary>
public sealed class ModelCatalogUnitTests
{
    [Fact]
    public void Default_options_serve_the_trained_chat_model_from_the_build_output()
    {
        using var catalog = new ModelCatalog(Options.Create(new ModelCatalogOptions { CacheBudgetMiB = 16 }), NullLogger<ModelCatalog>.Instance);
        var model = Assert.Single(catalog.All);
        Assert.Same(model, catalog.Default);
        Assert.Equal(ModelCatalog.ChatModelId, model.Id);
        Assert.Equal(4096, model.Config.VocabSize);
        foreach (var file in (string[])["tokenizer.model", "tokenizer_config.json", "generation_config.json"])
        {
            Assert.True(File.Exists(Path.Combine(AppContext.BaseDirectory, "models", ModelCatalog.ChatModelId, file)), file);
        }
    }

    [Fact]
    public void BuiltIn_Random_serves_the_generated_random_model()
    {
        using var catalog = new ModelCatalog(Options.Create(new ModelCatalogOptions
        {
            BuiltIn = BuiltInModel.Random,
            DemoModelDirectory = Path.Combine(Path.GetTempPath(), "kvcache-test-models"),
            CacheBudgetMiB = 16,
        }), NullLogger<ModelCatalog>.Instance);
        Assert.Equal(ModelCatalog.DemoModelId, Assert.Single(catalog.All).Id);
        Assert.Equal(512, catalog.Default.Config.VocabSize);
    }
}
