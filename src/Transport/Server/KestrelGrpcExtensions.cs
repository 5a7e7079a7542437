using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Microsoft.AspNetCore.Hosting;

public static class KestrelGrpcExtensions
{
    /// <summary>
    /// Listens for cleartext HTTP/2 with prior knowledge (h2c), which is what gRPC clients speak without TLS.
    /// Port 0 binds a free port; read it back from IServerAddressesFeature after start.
    /// </summary>
    public static KestrelServerOptions ListenGrpc(this KestrelServerOptions options, IPEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(endPoint);
        options.Listen(endPoint, listen => listen.Protocols = HttpProtocols.Http2);
        return options;
    }
}
