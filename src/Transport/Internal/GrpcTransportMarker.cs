namespace KvCache.Transport.Internal;

/// <summary>Registered by AddGrpcTransport so mapping methods without it fails at start, not on the first call.</summary>
internal sealed class GrpcTransportMarker;
