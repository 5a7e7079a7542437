using KvCache.Silo.Storage.Redis;
using KvCache.Testing.Redis;
using Xunit;

namespace KvCache.Silo.Tests.Storage;

/// <summary>The TLS settings of <see cref="RedisStoreOptions"/> as checked at start, and what they configure.</summary>
public sealed class RedisStoreTlsOptionsUnitTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("kvcache-redis-tls-options-");
    private readonly RedisTlsFiles _files;

    public RedisStoreTlsOptionsUnitTests() => _files = RedisTlsFiles.Create(_folder.FullName);

    public void Dispose() => _folder.Delete(recursive: true);

    [Fact]
    public void Existing_pem_files_pass()
    {
        var options = new RedisStoreOptions
        {
            UseTls = true,
            TlsCaCertificate = _files.CaCertificate,
            TlsClientCertificate = _files.ClientCertificate,
            TlsClientKey = _files.ClientKey,
        };

        Assert.True(new RedisStoreOptionsValidator().Validate(null, options).Succeeded);
        Assert.True(options.ToConfigurationOptions().Ssl);
    }

    [Theory]
    [InlineData(nameof(RedisStoreOptions.TlsCaCertificate))]
    [InlineData(nameof(RedisStoreOptions.TlsClientCertificate))]
    [InlineData(nameof(RedisStoreOptions.TlsClientKey))]
    public void A_missing_file_fails_validation_naming_its_setting(string setting)
    {
        string missing = Path.Combine(_folder.FullName, "absent.pem");
        var options = new RedisStoreOptions
        {
            UseTls = true,
            TlsCaCertificate = setting == nameof(RedisStoreOptions.TlsCaCertificate) ? missing : _files.CaCertificate,
            TlsClientCertificate = setting == nameof(RedisStoreOptions.TlsClientCertificate) ? missing : _files.ClientCertificate,
            TlsClientKey = setting == nameof(RedisStoreOptions.TlsClientKey) ? missing : _files.ClientKey,
        };

        var result = new RedisStoreOptionsValidator().Validate(null, options);

        Assert.True(result.Failed);
        Assert.StartsWith($"Spill:Redis: {setting}: no file at '{missing}'", result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_that_is_not_a_certificate_fails_validation_naming_its_setting()
    {
        var options = new RedisStoreOptions { UseTls = true, TlsCaCertificate = _files.ClientKey };

        var result = new RedisStoreOptionsValidator().Validate(null, options);

        Assert.True(result.Failed);
        Assert.Contains($"TlsCaCertificate '{_files.ClientKey}' is not a PEM certificate", result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void Tls_files_without_UseTls_or_a_key_without_its_certificate_are_refused()
    {
        var plaintext = new RedisStoreOptions { TlsCaCertificate = _files.CaCertificate };
        var keyOnly = new RedisStoreOptions { UseTls = true, TlsClientKey = _files.ClientKey };

        Assert.Contains("TlsCaCertificate is set but UseTls is false", new RedisStoreOptionsValidator().Validate(null, plaintext).FailureMessage, StringComparison.Ordinal);
        Assert.Contains("TlsClientKey is set without TlsClientCertificate", new RedisStoreOptionsValidator().Validate(null, keyOnly).FailureMessage, StringComparison.Ordinal);
    }
}
