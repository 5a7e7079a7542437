using System.Security.Cryptography;
using System.Text;
using KvCache.Contracts.Internal.V1;
using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Migration.Internal;
using KvCache.Silo.Models;
using KvCache.Silo.Runtime;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Transport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Silo.Cluster.Serving.Internal;

/// <summary>
/// The silo's internal endpoint (kvcache.internal.v1.Silo): the gateway's forwarded calls, checked for the
/// cluster secret, served by <see cref="ISessionService"/>. Sessions another live silo owns are answered
/// "not mine" with the owner; once this silo is dead or draining it stops taking new work.
/// </summary>
internal sealed class SiloGrpcService(
    ISessionService sessions,
    SessionCatalog catalog,
    ModelCatalog models,
    ISessionStore store,
    ISiloStatusOracle oracle,
    MembershipAgent agent,
    ClusterSiloLifecycle lifecycle,
    SessionMigrator migrator,
    IHostApplicationLifetime lifetime,
    IOptions<ClusterOptions> options,
    ILogger<SiloGrpcService> logger)
{
    private readonly byte[] _secretHash = SHA256.HashData(Encoding.UTF8.GetBytes(options.Value.Secret));

    public void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGrpcUnary(SiloGrpc.CreateSessionMethod, CreateSession);
        endpoints.MapGrpcUnary(SiloGrpc.AppendMethod, Append);
        endpoints.MapGrpcServerStreaming(SiloGrpc.DecodeMethod, Decode);
        endpoints.MapGrpcUnary(SiloGrpc.GetSessionMethod, GetSession);
        endpoints.MapGrpcUnary(SiloGrpc.SpillSessionMethod, SpillSession);
        endpoints.MapGrpcUnary(SiloGrpc.DeleteSessionMethod, DeleteSession);
        endpoints.MapGrpcUnary(SiloGrpc.ListSessionsMethod, ListSessions);
        endpoints.MapGrpcUnary(SiloGrpc.GetStatsMethod, GetStats);
        endpoints.MapGrpcUnary(SiloGrpc.MigrateSessionMethod, MigrateSession);
        endpoints.MapGrpcUnary(SiloGrpc.AcceptSessionMethod, AcceptSession);
        endpoints.MapGrpcUnary(SiloGrpc.DrainMethod, Drain);
    }

    private Task<V1.Session> CreateSession(CreateSessionCall call, ServerCallContext context) =>
        Serve(context, null, async () => SiloProtoMapping.ToProto(await sessions.CreateAsync(
            call.Tenant,
            call.Request?.Model,
            call.Request?.Codec,
            call.Request?.SessionId,
            context.CancellationToken)));

    private Task<V1.AppendResponse> Append(AppendCall call, ServerCallContext context)
    {
        var request = call.Request ?? new V1.AppendRequest();
        var key = new SessionKey(call.Tenant, request.SessionId);
        return Serve(context, key, async () => SiloProtoMapping.ToProto(
            await sessions.AppendAsync(key, request.TokenIds.ToArray(), request.TopLogprobs, context.CancellationToken)));
    }

    private async Task Decode(DecodeCall call, IServerStreamWriter<V1.DecodeEvent> responseStream, ServerCallContext context)
    {
        var request = call.Request ?? new V1.DecodeRequest();
        var key = new SessionKey(call.Tenant, request.SessionId);

        // A silo declared dead mid-stream stops producing: the new owner continues the request.
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, agent.DeclaredDead);
        await Serve(context, key, async () =>
        {
            await foreach (var token in sessions.DecodeAsync(key, SiloProtoMapping.ToOptions(request), cancel.Token).WithCancellation(cancel.Token))
            {
                await responseStream.WriteAsync(SiloProtoMapping.ToProto(token), cancel.Token);
            }

            return true;
        });
    }

    private Task<V1.Session> GetSession(SessionCall call, ServerCallContext context)
    {
        var key = new SessionKey(call.Tenant, call.SessionId);
        return Serve(context, key, async () =>
        {
            await EnsureNotOwnedElsewhereAsync(key, context.CancellationToken);
            return SiloProtoMapping.ToProto(await sessions.GetAsync(key, context.CancellationToken));
        });
    }

    private Task<V1.Session> SpillSession(SessionCall call, ServerCallContext context)
    {
        var key = new SessionKey(call.Tenant, call.SessionId);
        return Serve(context, key, async () =>
        {
            await EnsureNotOwnedElsewhereAsync(key, context.CancellationToken);
            return SiloProtoMapping.ToProto(await sessions.SpillAsync(key, context.CancellationToken));
        });
    }

    private Task<V1.DeleteSessionResponse> DeleteSession(SessionCall call, ServerCallContext context)
    {
        var key = new SessionKey(call.Tenant, call.SessionId);
        return Serve(context, key, async () =>
        {
            await EnsureNotOwnedElsewhereAsync(key, context.CancellationToken);
            await sessions.DeleteAsync(key, context.CancellationToken);
            return new V1.DeleteSessionResponse();
        });
    }

    private Task<V1.ListSessionsResponse> ListSessions(ListSessionsCall call, ServerCallContext context) =>
        Serve(context, null, async () =>
        {
            var request = call.Request ?? new V1.ListSessionsRequest();
            var page = await sessions.ListAsync(call.Tenant, request.PageSize, request.PageToken, context.CancellationToken);
            var response = new V1.ListSessionsResponse { NextPageToken = page.NextPageToken ?? "" };
            response.Sessions.AddRange(page.Sessions.Select(SiloProtoMapping.ToProto));
            return response;
        });

    private Task<SiloStats> GetStats(GetStatsRequest request, ServerCallContext context) =>
        Serve(context, null, () =>
        {
            var stats = new SiloStats
            {
                SiloAddress = oracle.SiloAddress.ToString(),
                SiloName = catalog.SiloName,
                ActiveSessions = catalog.ActiveCount,
                CacheBytesFree = models.All.Sum(m => m.CacheBytesFree),
                CacheBytesTotal = models.All.Sum(m => m.CacheBytesTotal),
            };
            stats.Models.AddRange(sessions.ListModels().Select(SiloProtoMapping.ToProto));
            return Task.FromResult(stats);
        });

    private Task<MigrateResult> MigrateSession(MigrateCall call, ServerCallContext context)
    {
        var key = new SessionKey(call.Tenant, call.SessionId);
        return Serve(context, key, () => migrator.MigrateAsync(key, call.TargetSilo, context.CancellationToken));
    }

    private Task<V1.Session> AcceptSession(AcceptCall call, ServerCallContext context)
    {
        var key = new SessionKey(call.Tenant, call.SessionId);
        return Serve(context, key, async () =>
        {
            GrainAddress? previous = null;
            if (call.PreviousActivation.Length > 0)
            {
                try
                {
                    previous = new GrainAddress(key, SiloAddress.Parse(call.PreviousSilo), ActivationId.Parse(call.PreviousActivation));
                }
                catch (Exception e) when (e is FormatException or ArgumentException)
                {
                    throw new SessionException(SessionErrorCode.InvalidArgument, $"Bad previous activation: {e.Message}");
                }
            }

            return SiloProtoMapping.ToProto(await catalog.AcceptAsync(key, previous, context.CancellationToken));
        });
    }

    private Task<DrainResult> Drain(DrainCall call, ServerCallContext context) =>
        Serve(context, null, async () =>
        {
            var (moved, spilled) = await lifecycle.DrainAsync();

            // Drained means leaving: the process stops as on SIGTERM (the shutdown finds nothing left to move).
            lifetime.StopApplication();
            return new DrainResult { Moved = moved, Spilled = spilled };
        });

    /// <summary>
    /// Reads that do not activate (Get, Spill, Delete) would answer from the store while another silo holds
    /// newer state in memory: they go to the owner.
    /// </summary>
    private async Task EnsureNotOwnedElsewhereAsync(SessionKey key, CancellationToken cancellationToken)
    {
        if (catalog.TryGetActive(key) is not null || string.IsNullOrEmpty(key.SessionId))
        {
            return;
        }

        GrainAddress? entry;
        bool live;
        try
        {
            entry = await store.Directory.LookupAsync(key, cancellationToken);
            live = entry is not null && entry.SiloAddress != oracle.SiloAddress && await oracle.IsLiveAsync(entry.SiloAddress, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not ArgumentException)
        {
            throw new SessionException(SessionErrorCode.Unavailable, "The spill store is unavailable.", ex);
        }
        catch (ArgumentException)
        {
            // An id the store refuses: the session service reports it as INVALID_ARGUMENT.
            return;
        }

        if (live)
        {
            throw SessionException.NotOwner(key.SessionId, entry!.SiloAddress);
        }
    }

    /// <summary>Checks the secret and the silo's state, runs the call, and reports session errors with their trailers.</summary>
    private async Task<T> Serve<T>(ServerCallContext context, SessionKey? key, Func<Task<T>> call)
    {
        if (!SiloProtocol.HasSecret(context.RequestHeaders, _secretHash))
        {
            SiloServingLog.Refused(logger, context.Peer);
            throw new RpcException(new Status(StatusCode.Unauthenticated, $"The silo's internal endpoint needs the cluster secret in '{SiloProtocol.SecretHeader}'."));
        }

        if (agent.DeclaredDead.IsCancellationRequested
            || (lifecycle.IsDraining && (key is not { } k || catalog.TryGetActive(k) is null)))
        {
            throw new RpcException(
                new Status(StatusCode.Unavailable, $"Silo {oracle.SiloAddress} stopped serving."),
                new Metadata { { SiloProtocol.ErrorTrailer, SiloProtocol.SiloStopped } });
        }

        try
        {
            return await call();
        }
        catch (SessionException ex)
        {
            var trailers = new Metadata { { SiloProtocol.ErrorTrailer, ex.Code.ToString() } };
            if (ex.Owner is { } owner)
            {
                trailers.Add(SiloProtocol.OwnerTrailer, owner.ToString());
            }

            throw new RpcException(new Status(SiloProtoMapping.ToStatusCode(ex.Code), ex.Message), trailers);
        }
        catch (OperationCanceledException) when (agent.DeclaredDead.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
            throw new RpcException(
                new Status(StatusCode.Unavailable, $"Silo {oracle.SiloAddress} was declared dead."),
                new Metadata { { SiloProtocol.ErrorTrailer, SiloProtocol.SiloStopped } });
        }
    }
}

internal static partial class SiloServingLog
{
    [LoggerMessage(500, LogLevel.Warning, "Refused an internal call from {Peer}: it did not carry the cluster secret")]
    public static partial void Refused(ILogger logger, string peer);
}
