using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using KvCache.Contracts.Internal.V1;
using KvCache.Gateway.Observability;
using KvCache.Silo.Cluster.Directory;
using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Cluster.Serving;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using KvCache.Silo.Storage.Redis;
using KvCache.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using V1 = KvCache.Contracts.V1;

namespace KvCache.Gateway.Routing.Internal;

/// <summary>
/// <see cref="ISessionService"/> across silo processes: each call goes to the session's owner, found through a
/// cached directory lookup, or to the silo placement picks when no live silo owns it. A "not mine" answer or a
/// lost silo drops the cached route and the call is forwarded, at most <see cref="MaxForwards"/> times. A Decode
/// with a request id that breaks mid-stream continues on the new owner: it replays the request's tokens, and the
/// ones this client already has are skipped, so the client sees each token exactly once.
/// </summary>
internal sealed class ClusterSessionService : ISessionService
{
    public const int MaxForwards = 2;

    private readonly ConcurrentDictionary<SessionKey, SiloAddress> _routes = new();
    private readonly RedisSessionStore _store;
    private readonly ClusterView _view;
    private readonly SiloConnections _connections;
    private readonly IPlacementDirector _placement;
    private readonly RoutingOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<ClusterSessionService> _logger;
    private readonly GatewayMetrics _metrics;

    public ClusterSessionService(
        RedisSessionStore store,
        ClusterView view,
        SiloConnections connections,
        IPlacementDirector placement,
        IOptions<RoutingOptions> options,
        TimeProvider time,
        ILogger<ClusterSessionService> logger,
        GatewayMetrics metrics)
    {
        _store = store;
        _view = view;
        _connections = connections;
        _placement = placement;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _metrics = metrics;
        _view.SilosLost += DropRoutes;
    }

    public Task<SessionInfo> CreateAsync(string tenant, string? model, string? codec, string? sessionId, CancellationToken cancellationToken) =>
        InvokeAsync(null, activates: false, async (silo, options) => SiloProtoMapping.ToInfo(await silo.CreateSessionAsync(
            new CreateSessionCall
            {
                Tenant = tenant,
                Request = new V1.CreateSessionRequest { Model = model ?? "", Codec = codec ?? "", SessionId = sessionId ?? "" },
            },
            options)), cancellationToken);

    public Task<AppendResult> AppendAsync(SessionKey key, ReadOnlyMemory<int> tokens, int topLogprobs, CancellationToken cancellationToken)
    {
        var request = new V1.AppendRequest { SessionId = key.SessionId, TopLogprobs = topLogprobs };
        request.TokenIds.AddRange(tokens.ToArray());
        var call = new AppendCall { Tenant = key.Tenant, Request = request };
        return InvokeAsync(key, activates: true, async (silo, options) => SiloProtoMapping.ToResult(await silo.AppendAsync(call, options)), cancellationToken);
    }

    public async IAsyncEnumerable<DecodedToken> DecodeAsync(
        SessionKey key,
        DecodeRequestOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var call = new DecodeCall { Tenant = key.Tenant, Request = SiloProtoMapping.ToProto(key.SessionId, options) };
        var sent = 0;
        SiloAddress? next = null;
        for (var forwards = 0; ; forwards++)
        {
            var silo = next ?? await ResolveAsync(key, activates: true, cancellationToken);
            next = null;
            RpcException? failure = null;

            // A retry with the same request id replays the request's tokens first: the client has `sent` of them.
            var skip = sent;
            using (var stream = _connections.Client(silo).Decode(call, _connections.Options(cancellationToken)))
            {
                while (true)
                {
                    DecodedToken token;
                    try
                    {
                        if (!await stream.ResponseStream.MoveNext(cancellationToken))
                        {
                            break;
                        }

                        token = SiloProtoMapping.ToToken(stream.ResponseStream.Current);
                    }
                    catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
                    {
                        failure = ex;
                        break;
                    }

                    _routes[key] = silo;
                    if (skip > 0)
                    {
                        skip--;
                        continue;
                    }

                    sent++;
                    yield return token;
                }
            }

            if (failure is null)
            {
                yield break;
            }

            if (sent > 0 && options.RequestId is null)
            {
                throw new SessionException(SessionErrorCode.Unavailable, "The session's silo failed mid-stream; send a request_id to make Decode resumable.");
            }

            next = await RecoverAsync(key, silo, failure, forwards, cancellationToken);
            RoutingLog.DecodeForwarded(_logger, key.Tenant, key.SessionId, silo, sent);
        }
    }

    public Task<SessionInfo> GetAsync(SessionKey key, CancellationToken cancellationToken) =>
        InvokeAsync(key, activates: false, async (silo, options) => SiloProtoMapping.ToInfo(
            await silo.GetSessionAsync(new SessionCall { Tenant = key.Tenant, SessionId = key.SessionId }, options)), cancellationToken);

    public Task<SessionInfo> SpillAsync(SessionKey key, CancellationToken cancellationToken) =>
        InvokeAsync(key, activates: false, async (silo, options) => SiloProtoMapping.ToInfo(
            await silo.SpillSessionAsync(new SessionCall { Tenant = key.Tenant, SessionId = key.SessionId }, options)), cancellationToken);

    public Task DeleteAsync(SessionKey key, CancellationToken cancellationToken) =>
        InvokeAsync(key, activates: false, async (silo, options) =>
        {
            await silo.DeleteSessionAsync(new SessionCall { Tenant = key.Tenant, SessionId = key.SessionId }, options);
            _routes.TryRemove(key, out _);
            return true;
        }, cancellationToken);

    public Task<SessionListPage> ListAsync(string tenant, int pageSize, string? pageToken, CancellationToken cancellationToken) =>
        InvokeAsync(null, activates: false, async (silo, options) =>
        {
            var page = await silo.ListSessionsAsync(
                new ListSessionsCall { Tenant = tenant, Request = new V1.ListSessionsRequest { PageSize = pageSize, PageToken = pageToken ?? "" } },
                options);
            return new SessionListPage(page.Sessions.Select(SiloProtoMapping.ToInfo).ToArray(), page.NextPageToken.Length == 0 ? null : page.NextPageToken);
        }, cancellationToken);

    public IReadOnlyList<ModelDescription> ListModels() => _view.Models;

    private async Task<T> InvokeAsync<T>(
        SessionKey? key,
        bool activates,
        Func<SiloGrpc.SiloClient, CallOptions, Task<T>> call,
        CancellationToken cancellationToken)
    {
        SiloAddress? next = null;
        for (var forwards = 0; ; forwards++)
        {
            var silo = next ?? await ResolveAsync(key, activates, cancellationToken);
            try
            {
                var result = await call(_connections.Client(silo), _connections.Options(cancellationToken));
                if (key is { } k && activates)
                {
                    _routes[k] = silo;
                }

                return result;
            }
            catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
            {
                next = await RecoverAsync(key, silo, ex, forwards, cancellationToken);
            }
        }
    }

    /// <summary>The silo a call for <paramref name="key"/> goes to: the cached route, the directory's live owner, or placement.</summary>
    private async Task<SiloAddress> ResolveAsync(SessionKey? key, bool activates, CancellationToken cancellationToken)
    {
        if (key is { } k)
        {
            if (_routes.TryGetValue(k, out var cached) && _view.IsLive(cached))
            {
                return cached;
            }

            GrainAddress? entry;
            try
            {
                entry = await _store.Directory.LookupAsync(k, cancellationToken);
            }
            catch (ArgumentException)
            {
                // An id the directory refuses: any silo reports it as INVALID_ARGUMENT.
                entry = null;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                throw new SessionException(SessionErrorCode.Unavailable, "The cluster directory is unavailable.", ex);
            }

            if (entry is not null && _view.IsLive(entry.SiloAddress))
            {
                _routes[k] = entry.SiloAddress;
                return entry.SiloAddress;
            }
        }

        var target = new PlacementTarget(key ?? default, PlacementHint.Current);
        var silo = _placement.OnAddActivation(target, _view.Candidates())
            ?? throw new SessionException(SessionErrorCode.Unavailable, "No active silo is in the cluster.");
        if (activates)
        {
            _view.NotePlaced(silo);
        }

        return silo;
    }

    /// <summary>
    /// Decides what a failed forward means: a session error is the caller's answer; "not mine" names the next
    /// silo; a silo that stopped or vanished is waited out (its lease lapses or its sessions move) before the call
    /// is placed again. Returns the next silo to try, or null to resolve afresh.
    /// </summary>
    private async Task<SiloAddress?> RecoverAsync(SessionKey? key, SiloAddress silo, RpcException failure, int forwards, CancellationToken cancellationToken)
    {
        var error = failure.Trailers.GetValue(SiloProtocol.ErrorTrailer);
        if (error is not null && error != SiloProtocol.SiloStopped && Enum.TryParse<SessionErrorCode>(error, out var code) && code != SessionErrorCode.NotOwner)
        {
            throw new SessionException(code, failure.Status.Detail);
        }

        if (error is null && failure.StatusCode is not (StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unknown or StatusCode.Aborted))
        {
            if (failure.StatusCode == StatusCode.Unauthenticated)
            {
                RoutingLog.SecretRefused(_logger, silo);
                throw new SessionException(SessionErrorCode.Unavailable, "A silo refused this gateway's cluster secret.", failure);
            }

            throw failure;
        }

        if (key is { } k)
        {
            _routes.TryRemove(k, out _);
        }

        if (forwards >= MaxForwards)
        {
            throw new SessionException(SessionErrorCode.Unavailable, $"The session's silo could not be reached after {MaxForwards} forwards; retry.", failure);
        }

        if (error == nameof(SessionErrorCode.NotOwner))
        {
            return failure.Trailers.GetValue(SiloProtocol.OwnerTrailer) is { } owner ? SiloAddress.Parse(owner) : null;
        }

        RoutingLog.SiloFailed(_logger, silo, failure.Status.StatusCode, failure.Status.Detail);
        _metrics.Failover();
        DropRoutes(new HashSet<SiloAddress> { silo });
        await WaitForFailoverAsync(key, silo, cancellationToken);
        return null;
    }

    /// <summary>
    /// Waits until <paramref name="silo"/> is no longer live or no longer owns the session, at most one lease
    /// and two refreshes: then a silo that only blipped is tried again.
    /// </summary>
    private async Task WaitForFailoverAsync(SessionKey? key, SiloAddress silo, CancellationToken cancellationToken)
    {
        var deadline = _time.GetUtcNow() + _view.LeaseDuration + 2 * _options.RefreshPeriod;
        while (true)
        {
            await _view.RefreshAsync(cancellationToken);
            if (!_view.IsLive(silo))
            {
                return;
            }

            if (key is { } k)
            {
                if ((await _store.Directory.LookupAsync(k, cancellationToken))?.SiloAddress != silo)
                {
                    return;
                }
            }
            else if (_view.Candidates().All(c => c.Silo != silo || c.Status != SiloStatus.Active))
            {
                // No session involved: any other silo will do once this one is no placement target.
                return;
            }

            if (_time.GetUtcNow() >= deadline)
            {
                return;
            }

            await Task.Delay(_options.RefreshPeriod, _time, cancellationToken);
        }
    }

    private void DropRoutes(IReadOnlySet<SiloAddress> silos)
    {
        foreach (var (key, silo) in _routes)
        {
            if (silos.Contains(silo))
            {
                _routes.TryRemove(new KeyValuePair<SessionKey, SiloAddress>(key, silo));
            }
        }
    }
}
