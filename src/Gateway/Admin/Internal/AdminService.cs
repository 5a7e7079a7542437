using KvCache.Contracts.Admin.V1;
using KvCache.Contracts.Internal.V1;
using KvCache.Gateway.Auth;
using KvCache.Gateway.Routing.Internal;
using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Serving;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using KvCache.Transport;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace KvCache.Gateway.Admin.Internal;

/// <summary>
/// The operator API (kvcache.admin.v1.Admin) of a routing gateway: lists silos, migrates a session, drains a silo.
/// Admin keys only; the work itself is the silos' (the owner hands the session to the target).
/// </summary>
internal sealed class AdminService(
    TenantAuthenticator auth,
    ClusterView view,
    SiloConnections connections,
    RedisSessionStore store,
    ILogger<AdminService> logger)
{
    public void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGrpcUnary(AdminGrpc.ListSilosMethod, ListSilos);
        endpoints.MapGrpcUnary(AdminGrpc.MigrateSessionMethod, MigrateSession);
        endpoints.MapGrpcUnary(AdminGrpc.DrainSiloMethod, DrainSilo);
    }

    private async Task<ListSilosResponse> ListSilos(ListSilosRequest request, ServerCallContext context)
    {
        auth.AuthenticateAdmin(context.RequestHeaders);
        await view.RefreshAsync(context.CancellationToken);
        var response = new ListSilosResponse();
        foreach (var (entry, stats) in view.Members())
        {
            response.Silos.Add(new KvCache.Contracts.Admin.V1.Silo
            {
                Address = entry.SiloAddress.ToString(),
                Name = entry.SiloName,
                Status = entry.Status.ToString(),
                ActiveSessions = stats?.ActiveSessions ?? 0,
                CacheBytesFree = stats?.CacheBytesFree ?? 0,
                CacheBytesTotal = stats?.CacheBytesTotal ?? 0,
            });
        }

        return response;
    }

    private async Task<MigrateSessionResponse> MigrateSession(MigrateSessionRequest request, ServerCallContext context)
    {
        var admin = auth.AuthenticateAdmin(context.RequestHeaders);
        if (string.IsNullOrEmpty(request.SessionId))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "session_id is required."));
        }

        var key = new SessionKey(request.Tenant is { Length: > 0 } t ? t : admin, request.SessionId);
        var ct = context.CancellationToken;
        await view.RefreshAsync(ct);
        var owner = await LiveOwnerAsync(key, ct);
        var call = new MigrateCall { Tenant = key.Tenant, SessionId = key.SessionId, TargetSilo = request.TargetSilo };
        MigrateResult result;
        try
        {
            if (owner is null)
            {
                // Not active anywhere: nothing to copy, the target activates it from the spill store.
                var target = Resolve(request.TargetSilo) ?? LeastLoaded()
                    ?? throw new RpcException(new Status(StatusCode.Unavailable, "No active silo is in the cluster."));
                var session = await connections.Client(target).AcceptSessionAsync(
                    new AcceptCall { Tenant = key.Tenant, SessionId = key.SessionId }, connections.Options(ct));
                result = new MigrateResult { ToSilo = target.ToString(), Position = session.Position };
            }
            else
            {
                try
                {
                    result = await connections.Client(owner.Value).MigrateSessionAsync(call, connections.Options(ct));
                }
                catch (RpcException ex) when (ex.Trailers.GetValue(SiloProtocol.OwnerTrailer) is { } moved)
                {
                    // It moved between the lookup and the call: ask the owner named.
                    result = await connections.Client(SiloAddress.Parse(moved)).MigrateSessionAsync(call, connections.Options(ct));
                }
            }
        }
        catch (RpcException ex)
        {
            // The silo's status (NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE, …) without the cluster's internal trailers.
            throw new RpcException(ex.Status);
        }

        AdminLog.Migrated(logger, key.Tenant, key.SessionId, result.FromSilo, result.ToSilo, result.CacheBytes, result.Seconds * 1000);
        var response = new MigrateSessionResponse
        {
            FromSilo = result.FromSilo,
            ToSilo = result.ToSilo,
            Position = result.Position,
            CacheBytes = result.CacheBytes,
            Seconds = result.Seconds,
        };
        try
        {
            response.Session = await connections.Client(SiloAddress.Parse(result.ToSilo)).GetSessionAsync(
                new SessionCall { Tenant = key.Tenant, SessionId = key.SessionId }, connections.Options(ct));
        }
        catch (RpcException)
        {
            // Moved on again already (or the target stopped): the migration itself is done.
        }

        return response;
    }

    private async Task<DrainSiloResponse> DrainSilo(DrainSiloRequest request, ServerCallContext context)
    {
        auth.AuthenticateAdmin(context.RequestHeaders);
        await view.RefreshAsync(context.CancellationToken);
        var silo = view.Members().Select(m => m.Entry).FirstOrDefault(m => Names(m.SiloAddress, request.Silo) && view.IsLive(m.SiloAddress))?.SiloAddress
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"Silo '{request.Silo}' is not a live member of the cluster."));
        try
        {
            var result = await connections.Client(silo).DrainAsync(new DrainCall(), connections.Options(context.CancellationToken));
            AdminLog.Drained(logger, silo, result.Moved, result.Spilled);
            return new DrainSiloResponse { Moved = result.Moved, Spilled = result.Spilled };
        }
        catch (RpcException ex)
        {
            throw new RpcException(ex.Status);
        }
    }

    private async Task<SiloAddress?> LiveOwnerAsync(SessionKey key, CancellationToken cancellationToken)
    {
        GrainAddress? entry;
        try
        {
            entry = await store.Directory.LookupAsync(key, cancellationToken);
        }
        catch (ArgumentException e)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
        }

        return entry is not null && view.IsLive(entry.SiloAddress) ? entry.SiloAddress : null;
    }

    private SiloAddress? Resolve(string target) =>
        string.IsNullOrEmpty(target)
            ? null
            : view.Candidates().FirstOrDefault(c => c.Status == SiloStatus.Active && Names(c.Silo, target))?.Silo
                ?? throw new RpcException(new Status(StatusCode.InvalidArgument, $"Silo '{target}' is not an active member of the cluster."));

    private SiloAddress? LeastLoaded() =>
        view.Candidates().Where(c => c.Status == SiloStatus.Active).OrderBy(c => c.ActiveSessions).FirstOrDefault()?.Silo;

    private static bool Names(SiloAddress silo, string name) => silo.ToString() == name || silo.Endpoint == name;
}

internal static partial class AdminLog
{
    [LoggerMessage(700, LogLevel.Information, "Admin: migrated session {Tenant}/{SessionId} from '{From}' to {To} ({Bytes} cache bytes, unavailable {Milliseconds:F1} ms)")]
    public static partial void Migrated(ILogger logger, string tenant, string sessionId, string from, string to, long bytes, double milliseconds);

    [LoggerMessage(701, LogLevel.Information, "Admin: drained silo {Silo}: moved {Moved} sessions, spilled {Spilled}")]
    public static partial void Drained(ILogger logger, SiloAddress silo, int moved, int spilled);
}
