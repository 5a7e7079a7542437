namespace KvCache.Transport;

/// <summary>Client-side settings of a <see cref="GrpcChannel"/> (mirrors Grpc.Net.Client's options of the same names).</summary>
public sealed class GrpcChannelOptions
{
    /// <summary>Largest response message accepted (bytes); null for no limit.</summary>
    public int? MaxReceiveMessageSize { get; set; } = 4 * 1024 * 1024;

    /// <summary>Largest request message sent (bytes); null for no limit.</summary>
    public int? MaxSendMessageSize { get; set; }

    /// <summary>Handler to send requests with; it must speak HTTP/2 and the caller keeps ownership of it.</summary>
    public HttpMessageHandler? HttpHandler { get; set; }
}
