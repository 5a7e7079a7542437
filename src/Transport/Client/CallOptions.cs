namespace KvCache.Transport;

/// <summary>Per-call settings (mirrors Grpc.Core.CallOptions).</summary>
/// <param name="Headers">Metadata sent as request headers.</param>
/// <param name="Deadline">When the call fails with DEADLINE_EXCEEDED; the server learns it through grpc-timeout.</param>
/// <param name="CancellationToken">Cancels the call (the client sees CANCELLED; the server's token fires).</param>
public readonly record struct CallOptions(Metadata? Headers = null, DateTime? Deadline = null, CancellationToken CancellationToken = default);
