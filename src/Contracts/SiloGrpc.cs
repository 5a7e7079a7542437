using KvCache.Contracts.V1;
using KvCache.Transport;

namespace KvCache.Contracts.Internal.V1;

/// <summary>
/// Method descriptors and client for the internal kvcache.internal.v1.Silo service (silo.proto), written
/// against the KvCache.Transport seam as Grpc.Tools would generate them.
/// </summary>
public static class SiloGrpc
{
    public const string ServiceName = "kvcache.internal.v1.Silo";

    public static readonly Method<CreateSessionCall, Session> CreateSessionMethod =
        new(MethodType.Unary, ServiceName, "CreateSession", CreateSessionCall.Parser, Session.Parser);

    public static readonly Method<AppendCall, AppendResponse> AppendMethod =
        new(MethodType.Unary, ServiceName, "Append", AppendCall.Parser, AppendResponse.Parser);

    public static readonly Method<DecodeCall, DecodeEvent> DecodeMethod =
        new(MethodType.ServerStreaming, ServiceName, "Decode", DecodeCall.Parser, DecodeEvent.Parser);

    public static readonly Method<SessionCall, Session> GetSessionMethod =
        new(MethodType.Unary, ServiceName, "GetSession", SessionCall.Parser, Session.Parser);

    public static readonly Method<SessionCall, Session> SpillSessionMethod =
        new(MethodType.Unary, ServiceName, "SpillSession", SessionCall.Parser, Session.Parser);

    public static readonly Method<SessionCall, DeleteSessionResponse> DeleteSessionMethod =
        new(MethodType.Unary, ServiceName, "DeleteSession", SessionCall.Parser, DeleteSessionResponse.Parser);

    public static readonly Method<ListSessionsCall, ListSessionsResponse> ListSessionsMethod =
        new(MethodType.Unary, ServiceName, "ListSessions", ListSessionsCall.Parser, ListSessionsResponse.Parser);

    public static readonly Method<GetStatsRequest, SiloStats> GetStatsMethod =
        new(MethodType.Unary, ServiceName, "GetStats", GetStatsRequest.Parser, SiloStats.Parser);

    public static readonly Method<MigrateCall, MigrateResult> MigrateSessionMethod =
        new(MethodType.Unary, ServiceName, "MigrateSession", MigrateCall.Parser, MigrateResult.Parser);

    public static readonly Method<AcceptCall, Session> AcceptSessionMethod =
        new(MethodType.Unary, ServiceName, "AcceptSession", AcceptCall.Parser, Session.Parser);

    public static readonly Method<DrainCall, DrainResult> DrainMethod =
        new(MethodType.Unary, ServiceName, "Drain", DrainCall.Parser, DrainResult.Parser);

    /// <summary>Typed client for kvcache.internal.v1.Silo; cheap to create, share the underlying channel.</summary>
    public sealed class SiloClient(CallInvoker invoker)
    {
        private readonly CallInvoker _invoker = invoker ?? throw new ArgumentNullException(nameof(invoker));

        public Task<Session> CreateSessionAsync(CreateSessionCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(CreateSessionMethod, request, options);

        public Task<AppendResponse> AppendAsync(AppendCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(AppendMethod, request, options);

        public AsyncServerStreamingCall<DecodeEvent> Decode(DecodeCall request, CallOptions options = default) =>
            _invoker.ServerStreaming(DecodeMethod, request, options);

        public Task<Session> GetSessionAsync(SessionCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(GetSessionMethod, request, options);

        public Task<Session> SpillSessionAsync(SessionCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(SpillSessionMethod, request, options);

        public Task<DeleteSessionResponse> DeleteSessionAsync(SessionCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(DeleteSessionMethod, request, options);

        public Task<ListSessionsResponse> ListSessionsAsync(ListSessionsCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(ListSessionsMethod, request, options);

        public Task<SiloStats> GetStatsAsync(GetStatsRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(GetStatsMethod, request, options);

        public Task<MigrateResult> MigrateSessionAsync(MigrateCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(MigrateSessionMethod, request, options);

        public Task<Session> AcceptSessionAsync(AcceptCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(AcceptSessionMethod, request, options);

        public Task<DrainResult> DrainAsync(DrainCall request, CallOptions options = default) =>
            _invoker.UnaryAsync(DrainMethod, request, options);
    }
}
