namespace KvCache.Transport;

/// <summary>Server-wide limits and error reporting, bound with <c>IOptions&lt;GrpcServerOptions&gt;</c>.</summary>
public sealed class GrpcServerOptions
{
    /// <summary>Largest request message accepted (bytes); larger ones end the call with RESOURCE_EXHAUSTED.</summary>
    public int MaxReceiveMessageSize { get; set; } = 4 * 1024 * 1024;

    /// <summary>Largest response message sent (bytes); larger ones end the call with RESOURCE_EXHAUSTED.</summary>
    public int MaxSendMessageSize { get; set; } = 4 * 1024 * 1024;

    /// <summary>Sends unexpected handler exceptions' type and message to clients; keep off outside development.</summary>
    public bool EnableDetailedErrors { get; set; }
}
