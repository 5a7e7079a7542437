namespace KvCache.Text;

/// <summary>Per-model overrides of what the model directory says about text (section <c>Models:Text:&lt;model id&gt;</c>).</summary>
public sealed class TextModelOptions
{
    /// <summary>Tokenizer: <c>auto</c> (default: from the directory's files), <c>none</c> (token ids only) or
    /// <c>byte</c> (token id = byte value; needs a vocabulary of at least 256).</summary>
    public string Tokenizer { get; set; } = "auto";

    /// <summary>Chat template family replacing the directory's <c>chat_template</c> (see
    /// <see cref="ChatTemplate.Families"/>), or <c>none</c>; empty keeps the directory's.</summary>
    public string? ChatTemplate { get; set; }
}
