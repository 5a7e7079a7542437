namespace KvCache.Client;

/// <summary>Settings of a <see cref="KvCacheChatClient"/>.</summary>
public sealed class KvCacheChatClientOptions
{
    /// <summary>Tenant API key, sent as <c>authorization: Bearer</c>; null when the service runs without keys.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Model of new conversations when <c>ChatOptions.ModelId</c> is not set; null is the service's default.</summary>
    public string? Model { get; set; }

    /// <summary>KV-cache codec of new conversations (<c>ListModels</c> names them); null is <c>full</c>.</summary>
    public string? Codec { get; set; }

    /// <summary>Reply length when <c>ChatOptions.MaxOutputTokens</c> is not set.</summary>
    public int DefaultMaxOutputTokens { get; set; } = 256;

    /// <summary>Sampling temperature when <c>ChatOptions.Temperature</c> is not set (0 is greedy).</summary>
    public float DefaultTemperature { get; set; } = 0.8f;

    /// <summary>
    /// How many times a call is sent in all when the service answers UNAVAILABLE (a silo failing over). Every
    /// attempt carries the same request id, so a retry neither repeats an Append nor loses or repeats a token.
    /// </summary>
    public int MaxAttempts { get; set; } = 4;

    /// <summary>Pause before a retry.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(250);
}
