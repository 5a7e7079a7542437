using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using KvCache.Silo.Storage.Redis;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace KvCache.Gateway.OpenAI;

/// <summary>
/// Response ids and chat conversation keys, mapped to the session (and position) that continues them. In the
/// spill store's Redis when one is configured, so every gateway process sees the same map and it outlives them;
/// in this process's memory otherwise. Entries expire <see cref="OpenAIOptions.Retention"/> after their last write.
/// </summary>
/// <remarks>Each entry records its tenant; a lookup by another tenant finds nothing, as if the id did not exist.</remarks>
internal interface IOpenAIStore
{
    Task SaveResponseAsync(string id, StoredResponse response, CancellationToken cancellationToken);

    Task<StoredResponse?> GetResponseAsync(string tenant, string id, CancellationToken cancellationToken);

    Task<bool> DeleteResponseAsync(string tenant, string id, CancellationToken cancellationToken);

    Task SaveConversationAsync(string key, StoredConversation conversation, CancellationToken cancellationToken);

    Task<StoredConversation?> GetConversationAsync(string tenant, string key, CancellationToken cancellationToken);
}

/// <summary>Store keys: a response id is random and ours; a conversation key is the caller's, so it is hashed with its tenant.</summary>
internal static class OpenAIStoreKeys
{
    public static string Response(string id) => "resp:" + id;

    public static string Conversation(string tenant, string key) => "conv:" + ConversationHash(tenant, key);

    /// <summary>A stable, id-safe digest of (tenant, conversation key): also the conversation's session id.</summary>
    public static string ConversationHash(string tenant, string key)
    {
        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(tenant + "\n" + key));
        return Convert.ToHexStringLower(digest.AsSpan(0, 16));
    }
}

internal sealed class InMemoryOpenAIStore(IOptions<OpenAIOptions> options) : IOpenAIStore, IDisposable
{
    private readonly MemoryCache _entries = new(new MemoryCacheOptions());
    private readonly TimeSpan _retention = options.Value.Retention;

    public Task SaveResponseAsync(string id, StoredResponse response, CancellationToken cancellationToken)
    {
        _entries.Set(OpenAIStoreKeys.Response(id), response, _retention);
        return Task.CompletedTask;
    }

    public Task<StoredResponse?> GetResponseAsync(string tenant, string id, CancellationToken cancellationToken) =>
        Task.FromResult(_entries.Get<StoredResponse>(OpenAIStoreKeys.Response(id)) is { } r && r.Tenant == tenant ? r : null);

    public Task<bool> DeleteResponseAsync(string tenant, string id, CancellationToken cancellationToken)
    {
        var key = OpenAIStoreKeys.Response(id);
        if (_entries.Get<StoredResponse>(key) is { } r && r.Tenant == tenant)
        {
            _entries.Remove(key);
            return Task.FromResult(true);
        }

        return Task.FromResult(false);
    }

    public Task SaveConversationAsync(string key, StoredConversation conversation, CancellationToken cancellationToken)
    {
        _entries.Set(OpenAIStoreKeys.Conversation(conversation.Tenant, key), conversation, _retention);
        return Task.CompletedTask;
    }

    public Task<StoredConversation?> GetConversationAsync(string tenant, string key, CancellationToken cancellationToken) =>
        Task.FromResult(_entries.Get<StoredConversation>(OpenAIStoreKeys.Conversation(tenant, key)));

    public void Dispose() => _entries.Dispose();
}

/// <summary>Entries as JSON strings under <c>{Spill:Redis:KeyPrefix}:openai:…</c>, with Redis' own expiry.</summary>
internal sealed class RedisOpenAIStore(RedisConnection connection, IOptions<RedisStoreOptions> redis, IOptions<OpenAIOptions> options) : IOpenAIStore
{
    private readonly string _prefix = redis.Value.KeyPrefix + ":openai:";
    private readonly int _database = redis.Value.Database;
    private readonly TimeSpan _retention = options.Value.Retention;

    private IDatabase Database => connection.Multiplexer.GetDatabase(_database);

    public Task SaveResponseAsync(string id, StoredResponse response, CancellationToken cancellationToken) =>
        Database.StringSetAsync(_prefix + OpenAIStoreKeys.Response(id), JsonSerializer.Serialize(response, OpenAIJsonContext.Default.StoredResponse), _retention);

    public async Task<StoredResponse?> GetResponseAsync(string tenant, string id, CancellationToken cancellationToken)
    {
        var value = await Database.StringGetAsync(_prefix + OpenAIStoreKeys.Response(id));
        return value.IsNull ? null : JsonSerializer.Deserialize((string)value!, OpenAIJsonContext.Default.StoredResponse) is { } r && r.Tenant == tenant ? r : null;
    }

    public async Task<bool> DeleteResponseAsync(string tenant, string id, CancellationToken cancellationToken) =>
        await GetResponseAsync(tenant, id, cancellationToken) is not null && await Database.KeyDeleteAsync(_prefix + OpenAIStoreKeys.Response(id));

    public Task SaveConversationAsync(string key, StoredConversation conversation, CancellationToken cancellationToken) =>
        Database.StringSetAsync(_prefix + OpenAIStoreKeys.Conversation(conversation.Tenant, key), JsonSerializer.Serialize(conversation, OpenAIJsonContext.Default.StoredConversation), _retention);

    public async Task<StoredConversation?> GetConversationAsync(string tenant, string key, CancellationToken cancellationToken)
    {
        var value = await Database.StringGetAsync(_prefix + OpenAIStoreKeys.Conversation(tenant, key));
        return value.IsNull ? null : JsonSerializer.Deserialize((string)value!, OpenAIJsonContext.Default.StoredConversation);
    }
}
