using KvCache.Transport;

namespace KvCache.Contracts.V1;

/// <summary>
/// Method descriptors and client for the kvcache.v1.KvCache service: what Grpc.Tools would generate from
/// kvcache.proto with GrpcServices="Both", written against the KvCache.Transport seam.
/// </summary>
public static partial class KvCacheGrpc
{
    public const string ServiceName = "kvcache.v1.KvCache";

    public static readonly Method<CreateSessionRequest, Session> CreateSessionMethod =
        new(MethodType.Unary, ServiceName, "CreateSession", CreateSessionRequest.Parser, Session.Parser);

    public static readonly Method<AppendRequest, AppendResponse> AppendMethod =
        new(MethodType.Unary, ServiceName, "Append", AppendRequest.Parser, AppendResponse.Parser);

    public static readonly Method<DecodeRequest, DecodeEvent> DecodeMethod =
        new(MethodType.ServerStreaming, ServiceName, "Decode", DecodeRequest.Parser, DecodeEvent.Parser);

    public static readonly Method<GetSessionRequest, Session> GetSessionMethod =
        new(MethodType.Unary, ServiceName, "GetSession", GetSessionRequest.Parser, Session.Parser);

    public static readonly Method<SpillSessionRequest, Session> SpillSessionMethod =
        new(MethodType.Unary, ServiceName, "SpillSession", SpillSessionRequest.Parser, Session.Parser);

    public static readonly Method<DeleteSessionRequest, DeleteSessionResponse> DeleteSessionMethod =
        new(MethodType.Unary, ServiceName, "DeleteSession", DeleteSessionRequest.Parser, DeleteSessionResponse.Parser);

    public static readonly Method<ListSessionsRequest, ListSessionsResponse> ListSessionsMethod =
        new(MethodType.Unary, ServiceName, "ListSessions", ListSessionsRequest.Parser, ListSessionsResponse.Parser);

    public static readonly Method<ListModelsRequest, ListModelsResponse> ListModelsMethod =
        new(MethodType.Unary, ServiceName, "ListModels", ListModelsRequest.Parser, ListModelsResponse.Parser);

    /// <summary>Typed client for kvcache.v1.KvCache; cheap to create, share the underlying channel.</summary>
    public sealed class KvCacheClient(CallInvoker invoker)
    {
        private readonly CallInvoker _invoker = invoker ?? throw new ArgumentNullException(nameof(invoker));

        public KvCacheClient(GrpcChannel channel)
            : this(channel.CreateCallInvoker())
        {
        }

        public Task<Session> CreateSessionAsync(CreateSessionRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(CreateSessionMethod, request, options);

        public Task<AppendResponse> AppendAsync(AppendRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(AppendMethod, request, options);

        public AsyncServerStreamingCall<DecodeEvent> Decode(DecodeRequest request, CallOptions options = default) =>
            _invoker.ServerStreaming(DecodeMethod, request, options);

        public Task<Session> GetSessionAsync(GetSessionRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(GetSessionMethod, request, options);

        public Task<Session> SpillSessionAsync(SpillSessionRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(SpillSessionMethod, request, options);

        public Task<DeleteSessionResponse> DeleteSessionAsync(DeleteSessionRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(DeleteSessionMethod, request, options);

        public Task<ListSessionsResponse> ListSessionsAsync(ListSessionsRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(ListSessionsMethod, request, options);

        public Task<ListModelsResponse> ListModelsAsync(ListModelsRequest request, CallOptions options = default) =>
            _invoker.UnaryAsync(ListModelsMethod, request, options);
    }
}
