using System.Net;
using KvCache.Transport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KvCache.Transport.Tests;

/// <summary>A real Kestrel server on 127.0.0.1 (free port, HTTP/2 only) with the methods a test maps.</summary>
internal sealed class TestGrpcServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TestGrpcServer(WebApplication app, Uri address)
    {
        _app = app;
        Address = address;
    }

    public Uri Address { get; }

    /// <summary>host:port, the form python's grpc.insecure_channel takes.</summary>
    public string HostPort => $"{Address.Host}:{Address.Port}";

    public static async Task<TestGrpcServer> StartAsync(Action<IEndpointRouteBuilder> map, Action<GrpcServerOptions>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenGrpc(new IPEndPoint(IPAddress.Loopback, 0)));
        builder.Services.AddGrpcTransport(configure);
        var app = builder.Build();
        map(app);
        app.MapGrpcFallback();
        await app.StartAsync();
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return new TestGrpcServer(app, new Uri(bound));
    }

    public GrpcChannel CreateChannel(GrpcChannelOptions? options = null) => GrpcChannel.ForAddress(Address, options);

    /// <summary>An HttpClient for hand-made requests; they must ask for HTTP/2 exactly (h2c).</summary>
    public HttpClient CreateRawClient() => new(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = Address };

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
