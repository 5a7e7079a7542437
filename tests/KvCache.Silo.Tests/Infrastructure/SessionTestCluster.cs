using KvCache.GpuWorker.Sampling;
using KvCache.Silo.Hosting;
using KvCache.Silo.Observability;
using KvCache.Silo.Placement;
using KvCache.Silo.Sessions;
using KvCache.Silo.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.TestingHost;
using Xunit;
using KvClusterOptions = KvCache.Silo.Hosting.ClusterOptions;

namespace KvCache.Silo.Tests.Infrastructure;

/// <summary>
/// Silos of the service in this process (Orleans' <see cref="InProcessTestCluster"/>) sharing one in-memory spill
/// store and load table, serving the generated demo model; <see cref="Sessions"/> calls them through the cluster's
/// client, as a gateway in Routed mode does.
/// </summary>
internal sealed class SessionTestCluster : IAsyncDisposable
{
    private SessionTestCluster(InProcessTestCluster cluster, ISessionStore store, IReadOnlyDictionary<string, string?> settings)
    {
        Cluster = cluster;
        Store = store;
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        Sessions = new SessionService(
            cluster.Client,
            Options.Create(configuration.GetSection(Hosting.SiloOptions.SectionName).Get<Hosting.SiloOptions>() ?? new()),
            Options.Create(configuration.GetSection(KvClusterOptions.SectionName).Get<KvClusterOptions>() ?? new()),
            new SessionServiceMetrics(),
            TimeProvider.System,
            cluster.Client.ServiceProvider.GetRequiredService<ILogger<SessionService>>());
    }

    public InProcessTestCluster Cluster { get; }

    public ISessionStore Store { get; }

    public ISessionService Sessions { get; }

    public IGrainFactory Grains => Cluster.Client;

    /// <param name="settings">Configuration over the defaults (64 MiB of cache memory, the random built-in model in a shared folder).</param>
    /// <param name="configureSilo">More silo configuration (Orleans options).</param>
    /// <param name="store">
    /// The spill store the silos share (default: a new in-memory one, or, with <c>Spill:Redis:Endpoint</c> among the
    /// settings, the Redis store each silo builds from them, as a silo process does).
    /// </param>
    public static async Task<SessionTestCluster> StartAsync(
        int silos = 1,
        IEnumerable<KeyValuePair<string, string?>>? settings = null,
        Action<ISiloBuilder>? configureSilo = null,
        ISessionStore? store = null)
    {
        var values = new Dictionary<string, string?>
        {
            ["Models:CacheBudgetMiB"] = "64",
            ["Models:DemoModelDirectory"] = Path.Combine(Path.GetTempPath(), "kvcache-test-models"),
            // The tests' token ids and expectations are the random model's.
            ["Models:BuiltIn"] = "Random",
            ["Cluster:LoadPublishPeriod"] = "00:00:00.100",
        };
        foreach (var (key, value) in settings ?? [])
        {
            values[key] = value;
        }

        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
        bool redis = !string.IsNullOrEmpty(values.GetValueOrDefault("Spill:Redis:Endpoint"));
        store ??= redis ? null : new InMemorySessionStore();
        var loads = new InMemorySiloLoadTable();
        var builder = new InProcessTestClusterBuilder((short)silos);
        // KVCACHE_TEST_LOG=1 writes each silo's and the client's log to a file in the working folder.
        builder.Options.ConfigureFileLogging = Environment.GetEnvironmentVariable("KVCACHE_TEST_LOG") == "1";
        builder.ConfigureSilo((_, silo) =>
        {
            if (store is not null)
            {
                silo.Services.AddSingleton<ISessionStore>(store);
            }

            silo.Services.AddSingleton<ISiloLoadTable>(loads);
            silo.AddKvCacheSilo(configuration);

            // A killed silo is declared dead within seconds, as the service's own defaults do.
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromSeconds(1);
                o.NumMissedProbesLimit = 2;
                o.NumVotesForDeathDeclaration = 1;
                o.TableRefreshTimeout = TimeSpan.FromSeconds(1);
            });
            configureSilo?.Invoke(silo);
        });
        builder.ConfigureClient(client => client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromSeconds(5)));
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return new SessionTestCluster(cluster, store ?? cluster.Silos[0].ServiceProvider.GetRequiredService<ISessionStore>(), values);
    }

    /// <summary>The service provider of the silo named <paramref name="name"/>.</summary>
    public IServiceProvider SiloServices(string name) => Cluster.Silos.Single(s => s.Name == name).ServiceProvider;

    public async Task<SessionKey> CreateAsync(string tenant, string id, string? codec = null)
    {
        var info = await Sessions.CreateAsync(tenant, null, codec, id, default);
        Assert.Equal(0, info.Position);
        return new SessionKey(tenant, info.Id);
    }

    public async Task<SessionKey> CreateWithPromptAsync(string tenant, string id, int[] prompt)
    {
        var key = await CreateAsync(tenant, id);
        var appended = await Sessions.AppendAsync(key, AppendInput.Tokens(prompt, 5), default);
        Assert.Equal(prompt.Length, appended.Position);
        return key;
    }

    public async Task<List<DecodedToken>> DecodeAsync(SessionKey key, int maxTokens, string? requestId = null)
    {
        var options = new DecodeRequestOptions(maxTokens, new SamplingOptions(0, 0, 0, 0), [], requestId);
        var tokens = new List<DecodedToken>();
        await foreach (var token in Sessions.DecodeAsync(key, options, default))
        {
            tokens.Add(token);
        }

        return tokens;
    }

    public async ValueTask DisposeAsync() => await Cluster.DisposeAsync();
}
