using System.Text.Json;
using KvCache.Gateway.Tests.Infrastructure;
using KvCache.GpuWorker;
using KvCache.Testing.Python;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// Text and chat through a real gateway process, driven by python3-grpcio (Python/text_client.py) and checked against
/// python3-sentencepiece, python3-jinja2 and a PyTorch perplexity reference. Models: "chat-llama" (a generated random
/// model with KvCache.Text.Tests' SentencePiece tokenizer and ChatML template), "llama" (bench/quality's trained
/// byte-level model: the byte tokenizer) and "plain-llama" (generated, no tokenizer).
/// </summary>
[Collection(ClusterProcessesCollection.Name)]
public sealed class TextChatIntegrationTests(TextChatIntegrationTests.Service service) : IClassFixture<TextChatIntegrationTests.Service>
{
    private const int MaxAppendTextChars = 4096;
    private static readonly string Script = Path.Combine(AppContext.BaseDirectory, "Python", "text_client.py");
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");

    [Fact]
    public async Task A_chat_streams_its_text_and_a_second_turn_sending_only_the_new_message_holds_the_whole_rendered_conversation()
    {
        var result = await service.RunAsync("chat", new { model = "chat-llama", model_dir = service.ChatModel, max_tokens = 24 });

        Assert.Equal("sentencepiece", result.GetProperty("tokenizer").GetString());
        Assert.Equal("chatml", result.GetProperty("chat_template").GetString());
        Assert.Equal(2, result.GetProperty("eos").GetArrayLength());
        Assert.True(result.GetProperty("turn1_first_logprob_is_nan").GetBoolean());
        Assert.True(result.GetProperty("turn1_logprobs_ok").GetBoolean());
        Assert.True(result.GetProperty("reply_tokens").GetInt32() > 0);
        Assert.True(result.GetProperty("streamed_equals_detokenized").GetBoolean(), result.GetProperty("streamed").GetString());
        Assert.True(
            result.GetProperty("live_equals_rendered").GetBoolean(),
            $"live     {result.GetProperty("live").GetRawText()}\nrendered {result.GetProperty("rendered").GetRawText()}");
        var position = result.GetProperty("position").GetInt64();
        Assert.Equal(result.GetProperty("live").GetArrayLength(), position);
        Assert.Equal(position, result.GetProperty("fresh_position").GetInt64());
        Assert.True(result.GetProperty("fresh_top_equals_live").GetBoolean());
        // A reply that ended with the end-of-turn token: the second turn does not repeat it.
        Assert.True(result.GetProperty("after_eos_equals_rendered").GetBoolean(), result.GetProperty("after_eos").GetRawText());
    }

    [Fact]
    public async Task Perplexity_through_the_API_equals_the_PyTorch_reference_within_a_tenth_of_a_percent()
    {
        using var reference = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(Fixtures, "perplexity_reference.json")));
        var windows = reference.RootElement.GetProperty("windows").EnumerateArray().ToArray();
        var result = await service.RunAsync("perplexity", new { model = "llama", texts = windows.Select(w => w.GetProperty("text").GetString()) });

        var measured = result.GetProperty("windows").EnumerateArray().ToArray();
        Assert.Equal(windows.Length, measured.Length);
        for (var i = 0; i < windows.Length; i++)
        {
            var text = windows[i].GetProperty("text").GetString()!;
            Assert.Equal(text.Length, measured[i].GetProperty("appended").GetInt32());
            Assert.Equal(text.Select(c => (int)c), measured[i].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
            Assert.Equal(256, measured[i].GetProperty("top").GetInt32());
            var want = windows[i].GetProperty("perplexity").GetDouble();
            var got = measured[i].GetProperty("perplexity").GetDouble();
            Assert.True(Math.Abs(got / want - 1) < 1e-3, $"window {i}: perplexity {got} through the API, {want} in PyTorch");
            var wantLogprobs = windows[i].GetProperty("logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            var gotLogprobs = measured[i].GetProperty("logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            Assert.Equal(wantLogprobs.Length, gotLogprobs.Length);
            Assert.True(wantLogprobs.Zip(gotLogprobs).Max(p => Math.Abs(p.First - p.Second)) < 1e-3);
        }
    }

    [Fact]
    public async Task A_stop_string_ends_the_stream_with_the_text_through_it()
    {
        using var reference = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(Fixtures, "perplexity_reference.json")));
        var prompt = reference.RootElement.GetProperty("windows")[0].GetProperty("text").GetString()![..300];
        var result = await service.RunAsync("stop-string", new { model = "llama", prompt });

        Assert.NotEmpty(result.GetProperty("stop").GetString()!.Trim());
        Assert.Equal("FINISH_REASON_STOP_STRING", result.GetProperty("finish").GetString());
        Assert.Equal(result.GetProperty("expected").GetString(), result.GetProperty("stopped").GetString());
        Assert.True(result.GetProperty("full").GetString()!.Length > result.GetProperty("stopped").GetString()!.Length);
    }

    [Fact]
    public async Task Bad_text_input_gets_a_clear_status_and_appends_nothing()
    {
        var result = await service.RunAsync("bad-input", new { chat_model = "chat-llama", plain_model = "plain-llama", byte_model = "llama", max_chars = MaxAppendTextChars });

        var codes = result.GetProperty("codes");
        string Code(string name) => codes.GetProperty(name).GetString()!;
        string Message(string name) => codes.GetProperty(name + "_message").GetString()!;
        Assert.Equal("INVALID_ARGUMENT", Code("text_over_limit"));
        Assert.Contains($"limit is {MaxAppendTextChars}", Message("text_over_limit"));
        Assert.Equal("INVALID_ARGUMENT", Code("unknown_role"));
        Assert.Contains("narrator", Message("unknown_role"));
        Assert.Equal("FAILED_PRECONDITION", Code("no_template"));
        Assert.Contains("no chat template", Message("no_template"));
        Assert.Equal("FAILED_PRECONDITION", Code("no_tokenizer"));
        Assert.Contains("no tokenizer", Message("no_tokenizer"));
        Assert.Equal("INVALID_ARGUMENT", Code("two_inputs"));
        Assert.Equal("INVALID_ARGUMENT", Code("no_input"));
        Assert.Equal("INVALID_ARGUMENT", Code("top_logprobs_negative"));
        Assert.Equal("INVALID_ARGUMENT", Code("top_logprobs_over_cap"));
        Assert.Contains("256", Message("top_logprobs_over_cap"));
        Assert.Equal("INVALID_ARGUMENT", Code("stop_empty"));
        Assert.Equal("INVALID_ARGUMENT", Code("stop_huge"));
        Assert.Equal("INVALID_ARGUMENT", Code("stop_too_many"));
        Assert.Equal("FAILED_PRECONDITION", Code("stop_without_tokenizer"));
        foreach (var session in result.GetProperty("positions").EnumerateObject())
        {
            Assert.Equal(3, session.Value.GetInt64());
        }
    }

    /// <summary>The models and one gateway process serving them, shared by the class's tests.</summary>
    public sealed class Service : IAsyncLifetime
    {
        private readonly string _root = Directory.CreateTempSubdirectory("kvcache-text-models-").FullName;
        private GatewayProcess _gateway = null!;
        private PythonStubs _stubs = null!;

        public string ChatModel => Path.Combine(_root, "chat-llama");

        public async Task InitializeAsync()
        {
            ChatTestModels.Write(ChatModel, seed: 19);

            var plain = Path.Combine(_root, "plain-llama");
            ModelGenerator.Write(plain, ModelConfig.Demo, seed: 20);
            _stubs = await PythonGrpc.GenerateStubsAsync(Path.Combine(AppContext.BaseDirectory, "Protos"), "kvcache/v1/kvcache.proto");
            _gateway = new GatewayProcess(
                GatewayProcess.FreePort(),
                $"--Models:Directories:0={ChatModel}",
                $"--Models:Directories:1={Path.Combine(Fixtures, "llama")}",
                $"--Models:Directories:2={plain}",
                "--Models:CacheBudgetMiB=64",
                $"--Silo:MaxAppendTextChars={MaxAppendTextChars}");
            await _gateway.StartAsync();
        }

        public async Task DisposeAsync()
        {
            await _gateway.DisposeAsync();
            _stubs.Dispose();
            Directory.Delete(_root, recursive: true);
        }

        public async Task<JsonElement> RunAsync(string scenario, object args)
        {
            var run = await PythonGrpc.RunScriptAsync(_stubs, Script, [_gateway.Target, scenario, JsonSerializer.Serialize(args)], TimeSpan.FromMinutes(3));
            return JsonDocument.Parse(run.StandardOutput.TrimEnd().Split('\n')[^1]).RootElement.Clone();
        }
    }
}
