namespace KvCache.Silo.Sessions;

/// <summary>
/// A tenant's sessions as the spill store holds them, and the models it can use: reads that must not activate (and
/// so restore) every session they mention. Keyed by tenant; any silo answers (a stateless worker).
/// </summary>
public interface ITenantSessionsGrain : IGrainWithStringKey
{
    Task<SessionInfo> GetSessionAsync(string sessionId);

    Task<SessionListPage> ListSessionsAsync(int pageSize, string? pageToken);

    Task<ModelDescription[]> ListModelsAsync();
}
