using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace KvCache.Transport.Internal;

/// <summary>Trailers-only UNIMPLEMENTED for gRPC requests to paths nobody mapped; 404 for anything else.</summary>
internal static class UnimplementedHandler
{
    public static Task HandleAsync(HttpContext http, ILogger logger)
    {
        if (!GrpcProtocol.IsGrpcContentType(http.Request.ContentType))
        {
            http.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }

        var path = http.Request.Path.Value ?? string.Empty;
        TransportLog.Unimplemented(logger, path);
        GrpcProtocol.WriteTrailersOnly(http.Response, new Status(StatusCode.Unimplemented, $"Method '{path}' is unimplemented."));
        return Task.CompletedTask;
    }
}
