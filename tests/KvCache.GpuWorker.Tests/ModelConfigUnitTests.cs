namespace KvCache.GpuWorker.Tests;

public sealed class ModelConfigUnitTests
{
    private const string HfConfig = """
        {
          "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
          "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
          "num_hidden_layers": 32, "num_attention_heads": 32, "max_position_embeddings": 4096,
          "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
          "torch_dtype": "float16", "rope_scaling": null, "bos_token_id": 1
        }
        """;

    [Fact]
    public void Parses_hugging_face_config_with_defaults()
    {
        var c = ModelConfig.FromJson(HfConfig);
        Assert.Equal(32000, c.VocabSize);
        Assert.Equal(4096, c.HiddenSize);
        Assert.Equal(11008, c.IntermediateSize);
        Assert.Equal(32, c.NumHiddenLayers);
        Assert.Equal(32, c.NumKeyValueHeads); // defaults to the attention heads
        Assert.Equal(128, c.HeadDim); // hidden / heads
        Assert.Equal(1e-5, c.RmsNormEps);
        Assert.Equal("float16", c.TorchDtype);
        Assert.False(c.TieWordEmbeddings);

        var minimal = ModelConfig.FromJson("""
            {"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 6, "max_position_embeddings": 32}
            """);
        Assert.Equal(6, minimal.HeadDim);
        Assert.Equal(1, minimal.NumKeyValueHeads);
        Assert.Equal(1e-6, minimal.RmsNormEps); // transformers' LlamaConfig default
        Assert.Equal(10000.0, minimal.RopeTheta);
    }

    [Fact]
    public void ToJson_round_trips()
    {
        foreach (var c in new[] { ModelConfig.Demo, ModelConfig.Benchmark, TestModels.Fixtures[1].Config with { TorchDtype = "bfloat16" } })
        {
            Assert.Equal(c, ModelConfig.FromJson(c.ToJson()));
        }
    }

    [Fact]
    public void Benchmark_model_matches_the_design()
    {
        var c = ModelConfig.Benchmark;
        Assert.Equal(73_728, FullKvCache.BytesPerTokenFor(c));
        Assert.InRange(c.ParameterCount, 133_000_000, 135_000_000);
        Assert.Equal(64, c.HeadDim);
    }

    [Theory]
    [InlineData("""{"num_key_value_heads": 3}""", typeof(ArgumentException), "num_key_value_heads")]
    [InlineData("""{"head_dim": 7}""", typeof(ArgumentException), "even")]
    [InlineData("""{"hidden_size": 0}""", typeof(ArgumentException), "hidden_size")]
    [InlineData("""{"vocab_size": "many"}""", typeof(FormatException), "vocab_size")]
    [InlineData("""{"vocab_size": null}""", typeof(FormatException), "vocab_size")]
    [InlineData("""{"rope_scaling": {"type": "linear", "factor": 2.0}}""", typeof(NotSupportedException), "rope_scaling")]
    [InlineData("""{"hidden_act": "gelu"}""", typeof(NotSupportedException), "gelu")]
    [InlineData("""{"attention_bias": true}""", typeof(NotSupportedException), "attention_bias")]
    [InlineData("""{"torch_dtype": "int8"}""", typeof(NotSupportedException), "int8")]
    [InlineData("""{"rms_norm_eps": -1}""", typeof(ArgumentException), "rms_norm_eps")]
    public void Invalid_configs_are_refused_with_a_clear_message(string overrides, Type exception, string mentioned)
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(ModelConfig.Demo.ToJson())!.AsObject();
        foreach (var (key, value) in System.Text.Json.Nodes.JsonNode.Parse(overrides)!.AsObject())
        {
            json[key] = value?.DeepClone();
        }

        var e = Assert.Throws(exception, () => ModelConfig.FromJson(json.ToJsonString()));
        Assert.Contains(mentioned, e.Message);
    }

    [Fact]
    public void Malformed_json_is_a_format_error()
    {
        Assert.Throws<FormatException>(() => ModelConfig.FromJson("{ not json"));
        Assert.Throws<FormatException>(() => ModelConfig.FromJson("[1, 2]"));
        Assert.Throws<FormatException>(() => ModelConfig.FromJson("{}"));
    }
}
