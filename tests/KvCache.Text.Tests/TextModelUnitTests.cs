namespace KvCache.Text.Tests;

public sealed class TextModelUnitTests
{
    [Fact]
    public void A_SentencePiece_unigram_model_is_refused_naming_the_supported_kind()
    {
        var error = Assert.Throws<InvalidDataException>(() => TextModel.Load(Fixtures.Path_("spm-unigram"), vocabSize: 4096));
        Assert.Contains("--model_type=bpe", error.Message);
        Assert.Contains("Tokenizer=none", error.Message);
    }

    [Fact]
    public void A_ChatML_SentencePiece_directory_has_its_tokenizer_template_and_end_tokens()
    {
        var text = TextModel.Load(Fixtures.Path_("spm-bpe"), vocabSize: 2000);
        Assert.Equal(TextTokenizer.SentencePieceKind, text.Tokenizer!.Kind);
        Assert.Equal("chatml", text.Template!.Family);
        // </s> from tokenizer_config.json, <|im_end|> as the template's end of turn.
        Assert.Equal([text.Tokenizer.SpecialTokenId("</s>")!.Value, text.Tokenizer.SpecialTokenId("<|im_end|>")!.Value], text.EosTokenIds);
        Assert.Equal(text.Tokenizer.SpecialTokenId("<s>"), text.BosTokenId);
    }

    /// <summary>What a demo model trained here looks like: spm_train's model with the ChatML markers as
    /// user-defined symbols, a tokenizer_config.json with only the template and its tokens, a generation_config.json.</summary>
    [Fact]
    public void A_bare_spm_train_directory_finds_its_chat_markers_in_the_model_itself()
    {
        var directory = Directory.CreateTempSubdirectory("kvcache-text-").FullName;
        try
        {
            File.Copy(Fixtures.Path_("spm-bpe/tokenizer.model"), Path.Combine(directory, "tokenizer.model"));
            var template = TextModel.Load(Fixtures.Path_("spm-bpe"), 2000).Template!;
            File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"), """
                { "bos_token": "<s>", "eos_token": "<|im_end|>",
                  "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}" }
                """);
            File.WriteAllText(Path.Combine(directory, "generation_config.json"), """{ "bos_token_id": 1, "eos_token_id": 2 }""");
            var text = TextModel.Load(directory, vocabSize: 2000);
            Assert.Equal(template.Family, text.Template!.Family);
            var imStart = text.Tokenizer!.SpecialTokenId("<|im_start|>");
            var imEnd = text.Tokenizer.SpecialTokenId("<|im_end|>");
            Assert.NotNull(imStart);
            Assert.Equal([2, imEnd!.Value], text.EosTokenIds);
            var ids = text.EncodeMessages([new("user", "hi")], lastToken: null);
            Assert.Equal(2, ids.Count(id => id == imStart));
            Assert.Equal(1, ids.Count(id => id == imEnd));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void A_byte_level_directory_without_tokenizer_files_gets_the_byte_tokenizer_and_no_end_tokens()
    {
        var directory = Directory.CreateTempSubdirectory("kvcache-text-").FullName;
        try
        {
            var text = TextModel.Load(directory, vocabSize: 256);
            Assert.Equal(TextTokenizer.ByteKind, text.Tokenizer!.Kind);
            Assert.Null(text.Template);
            Assert.Empty(text.EosTokenIds);
            Assert.Equal([0xC3, 0xA9], text.EncodeText("é"));
            Assert.Same(TextModel.None, TextModel.Load(directory, vocabSize: 512));
            Assert.Same(TextModel.None, TextModel.Load(directory, vocabSize: 256, new TextModelOptions { Tokenizer = "none" }));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void A_configured_template_family_replaces_the_directory_one()
    {
        var text = TextModel.Load(Fixtures.Path_("bpe"), vocabSize: 2000, new TextModelOptions { ChatTemplate = "zephyr" });
        Assert.Equal("zephyr", text.Template!.Family);
        Assert.Null(TextModel.Load(Fixtures.Path_("bpe"), vocabSize: 2000, new TextModelOptions { ChatTemplate = "none" }).Template);
        Assert.Throws<InvalidDataException>(() => TextModel.Load(Fixtures.Path_("bpe"), vocabSize: 2000, new TextModelOptions { ChatTemplate = "jinja" }));
    }

    [Fact]
    public void A_tokenizer_larger_than_the_model_vocabulary_is_refused()
    {
        Assert.Throws<InvalidDataException>(() => TextModel.Load(Fixtures.Path_("spm-bpe"), vocabSize: 1000));
    }
}
