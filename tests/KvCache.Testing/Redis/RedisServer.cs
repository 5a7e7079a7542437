using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace KvCache.Testing.Redis;

/// <summary>How to start a throwaway <see cref="RedisServer"/>.</summary>
public sealed class RedisServerOptions
{
    /// <summary>
    /// Loopback ports to pick from (inclusive); each test project owns a range, below the ephemeral range (32768-60999)
    /// so that no outgoing connection takes the port between the probe and redis-server's bind.
    /// </summary>
    public int FirstPort { get; init; } = 22000;

    public int LastPort { get; init; } = 22999;

    /// <summary>requirepass; null for none.</summary>
    public string? Password { get; init; }

    /// <summary>
    /// Serve TLS only (<c>--port 0 --tls-port</c>), with a CA and certificates generated in the server's directory
    /// (<see cref="RedisServer.Tls"/>).
    /// </summary>
    public bool Tls { get; init; }

    /// <summary>With <see cref="Tls"/>: require a client certificate issued by the CA (<c>tls-auth-clients yes</c>).</summary>
    public bool TlsAuthClients { get; init; }

    /// <summary>More redis-server arguments, e.g. ["--maxmemory", "1gb"].</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = [];

    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(20);
}

/// <summary>
/// A real redis-server (Debian's /usr/bin/redis-server, or $KVCACHE_REDIS_SERVER) on a free loopback port,
/// in memory only (no RDB, no AOF) with a temporary directory; ready once it answers PING. Disposing kills it.
/// Used by the tests and by the spill benchmark (compiled into both, so it references nothing but the BCL).
/// </summary>
public sealed class RedisServer : IAsyncDisposable, IDisposable
{
    public const string DefaultPath = "/usr/bin/redis-server";

    private readonly RedisServerOptions _options;
    private readonly StringBuilder _output;
    private Process _process;

    private RedisServer(Process process, StringBuilder output, int port, RedisServerOptions options, string directory, RedisTlsFiles? tls)
    {
        _process = process;
        _output = output;
        _options = options;
        Port = port;
        Directory = directory;
        Tls = tls;
    }

    /// <summary>The port it serves on: its TLS port with <see cref="RedisServerOptions.Tls"/>, else its plaintext one.</summary>
    public int Port { get; }

    /// <summary>Its CA and certificates with <see cref="RedisServerOptions.Tls"/>; null for a plaintext server.</summary>
    public RedisTlsFiles? Tls { get; }

    /// <summary>"127.0.0.1:port".</summary>
    public string Endpoint => $"127.0.0.1:{Port}";

    public string? Password => _options.Password;

    public string Directory { get; }

    /// <summary>What the server printed so far (its log).</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static string ExecutablePath =>
        Environment.GetEnvironmentVariable("KVCACHE_REDIS_SERVER") is { Length: > 0 } path ? path : DefaultPath;

    /// <exception cref="InvalidOperationException">redis-server is not installed, or would not start.</exception>
    public static async Task<RedisServer> StartAsync(RedisServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new RedisServerOptions();
        if (!File.Exists(ExecutablePath))
        {
            throw new InvalidOperationException(
                $"redis-server is not installed at {ExecutablePath}. Install it with: apt-get install redis-server " +
                "(or point KVCACHE_REDIS_SERVER at a redis-server binary).");
        }

        var failures = new StringBuilder();
        for (int attempt = 0; attempt < 10; attempt++)
        {
            int port = PickFreePort(options.FirstPort, options.LastPort);
            var server = await TryStartAsync(port, options, cancellationToken).ConfigureAwait(false);
            if (server.Started is not null)
            {
                return server.Started;
            }

            // Most likely another process took the port between the probe and the bind: try another one.
            failures.AppendLine($"port {port}: {server.Failure}");
        }

        throw new InvalidOperationException($"redis-server did not start:{Environment.NewLine}{failures}");
    }

    /// <summary>
    /// Kills the server (SIGKILL) and starts a fresh one on the same port, as clients see a crash and restart:
    /// their connections drop, and the data and loaded scripts are gone (nothing is persisted).
    /// </summary>
    public async Task RestartAsync(CancellationToken cancellationToken = default)
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        _process.Dispose();
        Append(_output, "--- restarted ---");
        _process = Launch(Port, _options, Directory, Tls, _output);
        if (await WaitReadyAsync(cancellationToken).ConfigureAwait(false) is { } failure)
        {
            throw new InvalidOperationException($"redis-server did not restart on port {Port}: {failure}");
        }
    }

    /// <summary>Kills the server (SIGKILL: nothing to save) and removes its directory.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        await _process.WaitForExitAsync().ConfigureAwait(false);
        _process.Dispose();
        DeleteDirectory(Directory);
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private static async Task<(RedisServer? Started, string? Failure)> TryStartAsync(int port, RedisServerOptions options, CancellationToken cancellationToken)
    {
        string directory = System.IO.Directory.CreateTempSubdirectory("kvcache-redis-").FullName;
        var output = new StringBuilder();
        var tls = options.Tls ? RedisTlsFiles.Create(directory) : null;
        var server = new RedisServer(Launch(port, options, directory, tls, output), output, port, options, directory, tls);
        string? failure;
        try
        {
            failure = await server.WaitReadyAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        if (failure is null)
        {
            return (server, null);
        }

        await server.DisposeAsync().ConfigureAwait(false);
        return (null, failure);
    }

    private static Process Launch(int port, RedisServerOptions options, string directory, RedisTlsFiles? tls, StringBuilder output)
    {
        var info = new ProcessStartInfo(ExecutablePath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = directory,
        };
        string portText = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (string argument in (string[])[.. tls is null ? ["--port", portText] : (string[])["--port", "0", "--tls-port", portText],
                     "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory, "--daemonize", "no"])
        {
            info.ArgumentList.Add(argument);
        }

        if (tls is not null)
        {
            foreach (string argument in (string[])["--tls-cert-file", tls.ServerCertificate, "--tls-key-file", tls.ServerKey,
                         "--tls-ca-cert-file", tls.CaCertificate, "--tls-auth-clients", options.TlsAuthClients ? "yes" : "no"])
            {
                info.ArgumentList.Add(argument);
            }
        }

        if (options.Password is { Length: > 0 } password)
        {
            info.ArgumentList.Add("--requirepass");
            info.ArgumentList.Add(password);
        }

        foreach (string argument in options.ExtraArguments)
        {
            info.ArgumentList.Add(argument);
        }

        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => Append(output, e.Data);
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Null once the server answers PING; why not if it exited first.</summary>
    /// <exception cref="InvalidOperationException">It did not answer within the start timeout.</exception>
    private async Task<string?> WaitReadyAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.StartTimeout);
        try
        {
            while (!_process.HasExited)
            {
                if (await AnswersPingAsync(Port, Tls, timeout.Token).ConfigureAwait(false))
                {
                    return null;
                }

                // Polls readiness of a child process; not a timing assumption in a test.
                await Task.Delay(20, timeout.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new InvalidOperationException($"redis-server did not answer PING within {_options.StartTimeout}:{Environment.NewLine}{Output}");
        }

        await _process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        return $"exited with code {_process.ExitCode}: {Output}";
    }

    /// <summary>
    /// True once the server replies to PING (+PONG, or -NOAUTH when it requires a password); over TLS, after a
    /// handshake that checks the server's certificate against the CA and presents the client certificate.
    /// </summary>
    private static async Task<bool> AnswersPingAsync(int port, RedisTlsFiles? tls, CancellationToken cancellationToken)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken).ConfigureAwait(false);
            await using Stream stream = tls is null ? client.GetStream() : await AuthenticateAsync(client.GetStream(), tls, cancellationToken).ConfigureAwait(false);
            await stream.WriteAsync("PING\r\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
            var reply = new byte[64];
            int n = await stream.ReadAsync(reply, cancellationToken).ConfigureAwait(false);
            string text = Encoding.ASCII.GetString(reply, 0, n);
            return text.StartsWith("+PONG", StringComparison.Ordinal) || text.StartsWith("-NOAUTH", StringComparison.Ordinal);
        }
        catch (SocketException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static async Task<SslStream> AuthenticateAsync(NetworkStream network, RedisTlsFiles tls, CancellationToken cancellationToken)
    {
        using var ca = X509CertificateLoader.LoadCertificateFromFile(tls.CaCertificate);
        using var certificate = X509Certificate2.CreateFromPemFile(tls.ClientCertificate, tls.ClientKey);
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(ca);
        var stream = new SslStream(network);
        try
        {
            await stream.AuthenticateAsClientAsync(
                new SslClientAuthenticationOptions
                {
                    TargetHost = RedisTlsFiles.ServerName,
                    CertificateChainPolicy = policy,
                    ClientCertificates = [certificate],
                },
                cancellationToken).ConfigureAwait(false);
            return stream;
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static int PickFreePort(int first, int last)
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            int port = Random.Shared.Next(first, last + 1);
            try
            {
                using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                probe.Bind(new IPEndPoint(IPAddress.Loopback, port));
                return port;
            }
            catch (SocketException)
            {
                // In use: try another.
            }
        }

        throw new InvalidOperationException($"No free loopback port in {first}-{last}.");
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(line);
        }
    }

    private static void DeleteDirectory(string directory)
    {
        try
        {
            System.IO.Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a temp directory left behind is harmless.
        }
    }
}
