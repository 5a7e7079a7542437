using KvCache.Silo.Storage.Internal;
using Microsoft.Extensions.Options;

namespace KvCache.Silo.Storage.Redis;

/// <summary>Settings of <see cref="RedisSessionStore"/> (configuration section <see cref="SectionName"/>).</summary>
public sealed class RedisStoreOptions : RedisClientOptions
{
    public const string SectionName = "Spill:Redis";

    /// <summary>First part of every key, so several deployments can share one Redis.</summary>
    public string KeyPrefix { get; set; } = "kvc";

    /// <summary>
    /// Chunks of a snapshot that is never committed (its writer died) expire after this; committing makes a
    /// snapshot's chunks permanent.
    /// </summary>
    public TimeSpan UncommittedChunkTtl { get; set; } = TimeSpan.FromHours(1);

    public override void Validate()
    {
        base.Validate();
        StoreArguments.ValidateId(KeyPrefix, nameof(KeyPrefix));
        ArgumentOutOfRangeException.ThrowIfLessThan(UncommittedChunkTtl, TimeSpan.FromSeconds(1));
    }

    public override string ToString() => $"{base.ToString()}, KeyPrefix={KeyPrefix}, UncommittedChunkTtl={UncommittedChunkTtl}";
}

/// <summary>Checks <see cref="RedisStoreOptions"/> at start (ValidateOnStart).</summary>
public sealed class RedisStoreOptionsValidator : IValidateOptions<RedisStoreOptions>
{
    public ValidateOptionsResult Validate(string? name, RedisStoreOptions options)
    {
        try
        {
            options.Validate();
            return ValidateOptionsResult.Success;
        }
        catch (ArgumentException e)
        {
            return ValidateOptionsResult.Fail($"{RedisStoreOptions.SectionName}: {e.Message}");
        }
    }
}
