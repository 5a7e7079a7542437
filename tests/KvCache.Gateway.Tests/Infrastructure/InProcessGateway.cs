using Grpc.Net.Client;
using KvCache.Gateway.Services;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KvCache.Gateway.Tests.Infrastructure;

/// <summary>
/// The gateway's own Program (embedded silo, in-memory store unless configured) in this process, on Kestrel on a
/// free loopback port, whose endpoints' request delegates can also be called directly for fast fuzzing.
/// </summary>
internal sealed class InProcessGateway : IAsyncDisposable
{
    private readonly Factory _factory;
    private readonly Dictionary<string, RequestDelegate> _delegates = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RequestDelegate> _unimplementedMethods = new(StringComparer.Ordinal);
    private readonly RequestDelegate _unimplementedService;

    private InProcessGateway(Factory factory, int port, int openAIPort)
    {
        _factory = factory;
        Port = port;
        Address = new Uri($"http://127.0.0.1:{port}");
        OpenAIAddress = new Uri($"http://127.0.0.1:{openAIPort}");
        RequestDelegate? unimplementedService = null;
        foreach (var endpoint in factory.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
        {
            // Grpc.AspNetCore maps each method as a literal path, "/{service}/{unimplementedMethod}" for each service
            // and "{unimplementedService}/{unimplementedMethod}" for the rest.
            var pattern = endpoint.RoutePattern;
            if (pattern.Parameters.Count == 0)
            {
                _delegates.Add(pattern.RawText!, endpoint.RequestDelegate!);
            }
            else if (pattern.GetParameter("unimplementedService") is not null)
            {
                unimplementedService = endpoint.RequestDelegate;
            }
            else if (pattern.GetParameter("unimplementedMethod") is not null)
            {
                var service = (RoutePatternLiteralPart)pattern.PathSegments[0].Parts[0];
                _unimplementedMethods.Add(service.Content, endpoint.RequestDelegate!);
            }
        }

        _unimplementedService = unimplementedService ?? throw new InvalidOperationException("No endpoint answers unknown services.");
    }

    public int Port { get; }

    public Uri Address { get; }

    /// <summary>The OpenAI-compatible HTTP/1.1 endpoint (<c>Kestrel:Endpoints:OpenAI</c>).</summary>
    public Uri OpenAIAddress { get; }

    public IServiceProvider Services => _factory.Services;

    /// <summary>Every line the gateway and its embedded silo logged at Information or above, in order.</summary>
    public IReadOnlyList<string> LogLines => [.. _factory.Lines];

    public static async Task<InProcessGateway> StartAsync(IReadOnlyDictionary<string, string?> settings)
    {
        var port = GatewayProcess.FreePort();
        var openAIPort = GatewayProcess.FreePort();
        var values = new Dictionary<string, string?>(settings)
        {
            // Replace the endpoints appsettings.json names.
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{port}",
            ["Kestrel:Endpoints:OpenAI:Url"] = $"http://127.0.0.1:{openAIPort}",
        };
        // The random built-in model unless a test says otherwise, as GatewayProcess.
        values.TryAdd("Models:BuiltIn", "Random");
        var factory = new Factory(values);
        factory.UseKestrel();
        try
        {
            // StartServer blocks until the host (and its silo) has started.
            await Task.Run(factory.StartServer);
        }
        catch
        {
            await factory.DisposeAsync();
            throw;
        }

        return new InProcessGateway(factory, port, openAIPort);
    }

    public GrpcChannel CreateChannel() => GrpcChannel.ForAddress(Address);

    /// <summary>
    /// Serves <paramref name="http"/> as routing would: with the endpoint of its path (an unimplemented fallback for
    /// unknown ones) and request services from a scope of the host's.
    /// </summary>
    public async Task InvokeAsync(HttpContext http)
    {
        var path = http.Request.Path.Value ?? "";
        var endpoint = _delegates.GetValueOrDefault(path)
            ?? _unimplementedMethods.GetValueOrDefault(path.Split('/', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "")
            ?? _unimplementedService;
        await using var scope = Services.CreateAsyncScope();
        http.RequestServices = scope.ServiceProvider;
        await endpoint(http);
    }

    public async ValueTask DisposeAsync() => await _factory.DisposeAsync();

    // Any type of the gateway's assembly names its entry point; Program is ambiguous here (the silo host has one too).
    private sealed class Factory(IReadOnlyDictionary<string, string?> settings) : WebApplicationFactory<KvCacheService>
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            // Host settings: Program reads some (the cluster mode, the spill store) before it builds.
            foreach (var (key, value) in settings)
            {
                builder.UseSetting(key, value);
            }

            builder.UseEnvironment("Production");
            builder.ConfigureLogging(logging =>
            {
                logging.ClearProviders();
                logging.AddProvider(new LineLoggerProvider(Lines));
            });
        }

        public System.Collections.Concurrent.ConcurrentQueue<string> Lines { get; } = new();
    }

    /// <summary>Keeps each formatted message, so a test can check what the silo did (e.g. how many tokens it replayed).</summary>
    private sealed class LineLoggerProvider(System.Collections.Concurrent.ConcurrentQueue<string> lines) : ILoggerProvider, ILogger
    {
        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                lines.Enqueue(formatter(state, exception));
            }
        }

        public void Dispose()
        {
        }
    }
}
