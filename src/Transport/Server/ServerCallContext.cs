namespace KvCache.Transport;

/// <summary>
/// Per-call state a handler sees (mirrors Grpc.Core.ServerCallContext: public members delegate to
/// protected *Core members so tests can supply their own implementation).
/// </summary>
public abstract class ServerCallContext
{
    public Metadata RequestHeaders => RequestHeadersCore;

    /// <summary>UTC deadline from the client's grpc-timeout; <see cref="DateTime.MaxValue"/> when it sent none.</summary>
    public DateTime Deadline => DeadlineCore;

    /// <summary>Fires when the deadline passes or the client resets or aborts the call.</summary>
    public CancellationToken CancellationToken => CancellationTokenCore;

    /// <summary>The client's address, e.g. "ipv4:127.0.0.1:50123".</summary>
    public string Peer => PeerCore;

    /// <summary>Entries sent with the final status (in the trailers, or the headers of a trailers-only response).</summary>
    public Metadata ResponseTrailers => ResponseTrailersCore;

    /// <summary>Status sent when the handler returns normally; OK unless the handler sets another.</summary>
    public Status Status
    {
        get => StatusCore;
        set => StatusCore = value;
    }

    protected abstract Metadata RequestHeadersCore { get; }

    protected abstract DateTime DeadlineCore { get; }

    protected abstract CancellationToken CancellationTokenCore { get; }

    protected abstract string PeerCore { get; }

    protected abstract Metadata ResponseTrailersCore { get; }

    protected abstract Status StatusCore { get; set; }
}
