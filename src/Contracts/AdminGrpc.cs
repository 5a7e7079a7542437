using KvCache.Transport;

namespace KvCache.Contracts.Admin.V1;

/// <summary>
/// Method descriptors and client for kvcache.admin.v1.Admin (admin.proto), written against the KvCache.Transport
/// seam as Grpc.Tools would generate them.
/// </summary>
public static class AdminGrpc
{
    public const string ServiceName = "kvcache.admin.v1.Admin";

    public static readonly Method<ListSilosRequest, ListSilosResponse> ListSilosMethod =
        new(MethodType.Unary, ServiceName, "ListSilos", ListSilosRequest.Parser, ListSilosResponse.Parser);

    public static readonly Method<MigrateSessionRequest, MigrateSessionResponse> MigrateSessionMethod =
        new(MethodType.Unary, ServiceName, "MigrateSession", MigrateSessionRequest.Parser, MigrateSessionResponse.Parser);

    public static readonly Method<DrainSiloRequest, DrainSiloResponse> DrainSiloMethod =
        new(MethodType.Unary, ServiceName, "DrainSilo", DrainSiloRequest.Parser, DrainSiloResponse.Parser);

    /// <summary>Typed client for kvcache.admin.v1.Admin; cheap to create, share the underlying channel.</summary>
    public sealed class AdminClient(CallInvoker invoker)
    {
        private readonly CallInvoker _invoker = invoker ?? throw new ArgumentNullException(nameof(invoker));

        public Task<ListSilosResponse> ListSilosAsync(ListSilosRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(ListSilosMethod, request, options);

        public Task<MigrateSessionResponse> MigrateSessionAsync(MigrateSessionRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(MigrateSessionMethod, request, options);

        public Task<DrainSiloResponse> DrainSiloAsync(DrainSiloRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(DrainSiloMethod, request, options);
    }
}
