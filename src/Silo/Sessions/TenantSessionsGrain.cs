using KvCache.Silo.Models;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions.Internal;
using KvCache.Silo.Storage;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;

namespace KvCache.Silo.Sessions;

[StatelessWorker]
internal sealed class TenantSessionsGrain(ISessionStore store, ModelCatalog models, SiloLoads loads, ILogger<TenantSessionsGrain> logger) : Grain, ITenantSessionsGrain
{
    private string Tenant => this.GetPrimaryKeyString();

    public async Task<SessionInfo> GetSessionAsync(string sessionId)
    {
        var key = new SessionKey(Tenant, sessionId);
        var state = await StoreCallAsync(() => store.GetStateAsync(key)) ?? throw SessionException.NotFound(sessionId);
        return SessionInfos.Stored(state, models, loads.LiveSiloName);
    }

    public async Task<SessionListPage> ListSessionsAsync(int pageSize, string? pageToken)
    {
        var page = await StoreCallAsync(() => store.ListAsync(Tenant, pageToken, pageSize));
        return new SessionListPage(page.Sessions.Select(s => SessionInfos.Stored(s, models, loads.LiveSiloName)).ToArray(), page.NextPageToken);
    }

    public Task<ModelDescription[]> ListModelsAsync() =>
        Task.FromResult(models.All.Select(m => new ModelDescription(
            m.Id,
            m.Config.VocabSize,
            m.Config.MaxPositionEmbeddings,
            [.. m.Codecs],
            m.Config.NumHiddenLayers,
            m.Config.HiddenSize,
            m.ParameterCount,
            models.Text(m).Tokenizer?.Kind ?? "",
            models.Text(m).Template?.Family ?? "",
            [.. models.Text(m).EosTokenIds])).ToArray());

    private async Task<T> StoreCallAsync<T>(Func<ValueTask<T>> call)
    {
        try
        {
            return await call();
        }
        catch (Exception ex) when (ex is not SessionException and not OperationCanceledException and not ArgumentException)
        {
            // Logged here: the error crosses to the caller without its (e.g. Redis) inner exception.
            TenantSessionsLog.StoreFailed(logger, ex, Tenant);
            throw new SessionException(SessionErrorCode.Unavailable, "The spill store is unavailable.");
        }
    }
}

internal static partial class TenantSessionsLog
{
    [LoggerMessage(120, LogLevel.Warning, "A spill-store read for tenant {Tenant} failed")]
    public static partial void StoreFailed(ILogger logger, Exception exception, string tenant);
}
