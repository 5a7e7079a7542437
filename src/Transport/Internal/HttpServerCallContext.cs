using Microsoft.AspNetCore.Http;

namespace KvCache.Transport.Internal;

/// <summary>
/// The call context over one HTTP/2 stream. It owns the deadline timer and sends the final status:
/// in trailers after messages, or in the headers of a trailers-only response when none was sent.
/// </summary>
internal sealed class HttpServerCallContext : ServerCallContext, IDisposable
{
    // CancellationTokenSource timers cannot exceed this; a longer timeout is as good as none.
    private static readonly TimeSpan s_maxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly HttpContext _http;
    private readonly CancellationTokenSource? _deadlineCts;
    private readonly CancellationTokenSource? _linkedCts;
    private readonly DateTime _deadline;
    private Metadata? _requestHeaders;
    private Metadata? _responseTrailers;
    private Status _status = Status.DefaultSuccess;

    public HttpServerCallContext(HttpContext http, TimeSpan? timeout)
    {
        _http = http;
        _deadline = DateTime.MaxValue;
        if (timeout is { } t)
        {
            var now = DateTime.UtcNow;
            _deadline = t < DateTime.MaxValue - now ? now + t : DateTime.MaxValue;
            if (t < s_maxTimer)
            {
                _deadlineCts = new CancellationTokenSource(t);
                _linkedCts = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted, _deadlineCts.Token);
            }
        }
    }

    /// <summary>True once the deadline has passed; from then on the call can only end with DEADLINE_EXCEEDED.</summary>
    public bool DeadlineExceeded => _deadlineCts?.IsCancellationRequested == true;

    public HttpContext HttpContext => _http;

    public bool ClientAborted => _http.RequestAborted.IsCancellationRequested;

    /// <summary>Set once a message is in the response body, so the status must go in trailers.</summary>
    public bool ResponseStarted { get; set; }

    protected override Metadata RequestHeadersCore => _requestHeaders ??= ReadRequestHeaders(_http.Request.Headers);

    protected override DateTime DeadlineCore => _deadline;

    protected override CancellationToken CancellationTokenCore => _linkedCts?.Token ?? _http.RequestAborted;

    protected override string PeerCore
    {
        get
        {
            var connection = _http.Connection;
            return connection.RemoteIpAddress switch
            {
                null => "unknown",
                { AddressFamily: System.Net.Sockets.AddressFamily.InterNetworkV6 } ip => $"ipv6:[{ip}]:{connection.RemotePort}",
                var ip => $"ipv4:{ip}:{connection.RemotePort}",
            };
        }
    }

    protected override Metadata ResponseTrailersCore => _responseTrailers ??= new Metadata();

    protected override Status StatusCore
    {
        get => _status;
        set => _status = value;
    }

    /// <summary>Sends the final status; a no-op for a client that is gone.</summary>
    public void Complete(Status status)
    {
        if (ClientAborted)
        {
            return;
        }

        // Trailers-only when no message went out: everything goes in the one HEADERS frame that ends the stream.
        var response = _http.Response;
        var inHeaders = !ResponseStarted;
        Append(response, inHeaders, GrpcProtocol.StatusHeader, GrpcProtocol.FormatStatusCode(status.StatusCode));
        if (!string.IsNullOrEmpty(status.Detail))
        {
            Append(response, inHeaders, GrpcProtocol.MessageHeader, PercentEncoding.Encode(status.Detail));
        }

        if (_responseTrailers is not null)
        {
            foreach (var entry in _responseTrailers)
            {
                Append(response, inHeaders, entry.Key, entry.Value);
            }
        }
    }

    public void Dispose()
    {
        _linkedCts?.Dispose();
        _deadlineCts?.Dispose();
    }

    private static void Append(HttpResponse response, bool inHeaders, string key, string value)
    {
        if (inHeaders)
        {
            response.Headers.Append(key, value);
        }
        else
        {
            response.AppendTrailer(key, value);
        }
    }

    private static Metadata ReadRequestHeaders(IHeaderDictionary headers)
    {
        var metadata = new Metadata();
        foreach (var (key, values) in headers)
        {
            if (IsTransportHeader(key))
            {
                continue;
            }

            foreach (var value in values)
            {
                metadata.Add(key, value ?? string.Empty);
            }
        }

        return metadata;
    }

    // Pseudo-headers and the protocol's own headers are not application metadata.
    private static bool IsTransportHeader(string key) =>
        key.StartsWith(':')
        || key.Equals("content-type", StringComparison.OrdinalIgnoreCase)
        || key.Equals("content-length", StringComparison.OrdinalIgnoreCase)
        || key.Equals("host", StringComparison.OrdinalIgnoreCase)
        || key.Equals(GrpcProtocol.TeHeader, StringComparison.OrdinalIgnoreCase)
        || key.Equals(GrpcProtocol.TimeoutHeader, StringComparison.OrdinalIgnoreCase)
        || key.Equals(GrpcProtocol.EncodingHeader, StringComparison.OrdinalIgnoreCase)
        || key.Equals(GrpcProtocol.AcceptEncodingHeader, StringComparison.OrdinalIgnoreCase);
}
