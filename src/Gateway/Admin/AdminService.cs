using Grpc.Core;
using KvCache.Contracts.Admin.V1;
using KvCache.Gateway.Auth;
using KvCache.Gateway.Services.Internal;
using KvCache.Silo.Migration;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;

namespace KvCache.Gateway.Admin;

/// <summary>
/// The operator API (<c>kvcache.admin.v1.Admin</c>): lists the silos with their load, migrates a session, drains a
/// silo. Admin keys only; the work itself is the silos'.
/// </summary>
public sealed class AdminService(
    IGrainFactory grains,
    ISessionService sessions,
    TenantAuthenticator auth,
    ILogger<AdminService> logger) : KvCache.Contracts.Admin.V1.Admin.AdminBase
{
    private static readonly TimeSpan LoadTimeout = TimeSpan.FromSeconds(5);

    public override async Task<ListSilosResponse> ListSilos(ListSilosRequest request, ServerCallContext context)
    {
        auth.AuthenticateAdmin(context.RequestHeaders);
        var response = new ListSilosResponse();
        foreach (var host in await grains.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: false))
        {
            var load = host.Status == SiloStatus.Active ? await LoadOfAsync(host.SiloAddress) : null;
            response.Silos.Add(new KvCache.Contracts.Admin.V1.Silo
            {
                Address = host.SiloAddress.ToParsableString(),
                Name = host.SiloName,
                Status = host.Status.ToString(),
                ActiveSessions = load?.ActiveSessions ?? 0,
                CacheBytesFree = load?.CacheBytesFree ?? 0,
                CacheBytesTotal = load?.CacheBytesTotal ?? 0,
                Draining = load?.Draining ?? false,
            });
        }

        return response;
    }

    public override async Task<MigrateSessionResponse> MigrateSession(MigrateSessionRequest request, ServerCallContext context)
    {
        var admin = auth.AuthenticateAdmin(context.RequestHeaders);
        if (string.IsNullOrEmpty(request.SessionId))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "session_id is required."));
        }

        var key = new SessionKey(request.Tenant is { Length: > 0 } tenant ? tenant : admin, request.SessionId);
        var (result, session) = await sessions.MigrateAsync(key, request.TargetSilo, context.CancellationToken);
        AdminLog.Migrated(logger, key.Tenant, key.SessionId, result.FromSilo, result.ToSilo, result.CacheBytes, result.Seconds * 1000);
        return new MigrateSessionResponse
        {
            FromSilo = result.FromSilo,
            ToSilo = result.ToSilo,
            Position = result.Position,
            CacheBytes = result.CacheBytes,
            Seconds = result.Seconds,
            Session = ProtoMapping.ToProto(session),
        };
    }

    public override async Task<DrainSiloResponse> DrainSilo(DrainSiloRequest request, ServerCallContext context)
    {
        auth.AuthenticateAdmin(context.RequestHeaders);
        var hosts = await grains.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: true);
        var silo = hosts.FirstOrDefault(h => SiloNames.Matches(h.SiloAddress, h.SiloName, request.Silo))
            ?? throw new RpcException(new Status(StatusCode.NotFound, "That silo is not an active member of the cluster; ListSilos names them."));
        var result = await grains.GetGrain<ISiloControlGrain>(silo.SiloAddress.ToParsableString()).DrainAsync();
        AdminLog.Drained(logger, silo.SiloName, result.Moved, result.Spilled);
        return new DrainSiloResponse { Moved = result.Moved, Spilled = result.Spilled };
    }

    private async Task<SiloLoad?> LoadOfAsync(SiloAddress silo)
    {
        try
        {
            return await grains.GetGrain<ISiloControlGrain>(silo.ToParsableString()).GetLoadAsync().WaitAsync(LoadTimeout);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // A silo that cannot report now is listed with its membership status alone.
            AdminLog.LoadUnavailable(logger, silo.ToString(), ex.Message);
            return null;
        }
    }
}

internal static partial class AdminLog
{
    [LoggerMessage(700, LogLevel.Information, "Admin: migrated session {Tenant}/{SessionId} from '{From}' to {To} ({Bytes} cache bytes, unavailable {Milliseconds:F1} ms)")]
    public static partial void Migrated(ILogger logger, string tenant, string sessionId, string from, string to, long bytes, double milliseconds);

    [LoggerMessage(701, LogLevel.Information, "Admin: drained silo {Silo}: moved {Moved} sessions, spilled {Spilled}")]
    public static partial void Drained(ILogger logger, string silo, int moved, int spilled);

    [LoggerMessage(702, LogLevel.Warning, "Admin: silo {Silo} did not report its load: {Reason}")]
    public static partial void LoadUnavailable(ILogger logger, string silo, string reason);
}
