using Microsoft.Extensions.AI;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Client;

/// <summary>Adapts the generated gRPC client to Microsoft.Extensions.AI.</summary>
public static class KvCacheClientExtensions
{
    /// <summary>An <see cref="IChatClient"/> whose conversations are sessions of this service.</summary>
    public static IChatClient AsIChatClient(this V1.KvCache.KvCacheClient client, KvCacheChatClientOptions? options = null) =>
        new KvCacheChatClient(client, options);
}
