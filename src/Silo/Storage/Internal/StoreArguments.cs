using KvCache.Contracts.Snapshots;

namespace KvCache.Silo.Storage.Internal;

/// <summary>Argument checks shared by every <see cref="ISessionStore"/> so both behave alike.</summary>
internal static class StoreArguments
{
    public const int MaxIdLength = 128;
    public const int MaxRequestIdLength = 256;

    /// <summary>
    /// Session ids (and page tokens, which are session ids) become parts of Redis keys as they are: only [A-Za-z0-9._-]
    /// are allowed, so no id can forge a separator (':' '/') or a hash tag ('{' '}').
    /// </summary>
    public static void ValidateId(string? id, string paramName)
    {
        ArgumentException.ThrowIfNullOrEmpty(id, paramName);
        if (id.Length > MaxIdLength)
        {
            throw new ArgumentException($"Id is longer than {MaxIdLength} characters.", paramName);
        }

        foreach (char c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                throw new ArgumentException($"Id '{id}' has character '{c}'; only letters, digits, '-', '_' and '.' are allowed.", paramName);
            }
        }
    }

    /// <summary>
    /// A tenant is any name of 1-128 characters: the stores encode it where it becomes part of a key (see the Redis
    /// store's key layout), so operators may name tenants as they like, e.g. by e-mail address.
    /// </summary>
    public static void ValidateTenant(string? tenant, string paramName)
    {
        ArgumentException.ThrowIfNullOrEmpty(tenant, paramName);
        if (tenant.Length > MaxIdLength)
        {
            throw new ArgumentException($"Tenant is longer than {MaxIdLength} characters.", paramName);
        }
    }

    public static void ValidateKey(SessionKey key)
    {
        ValidateTenant(key.Tenant, "key.Tenant");
        ValidateId(key.SessionId, "key.SessionId");
    }

    public static void ValidateRecord(SessionRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        ValidateKey(record.Key);
        ArgumentException.ThrowIfNullOrEmpty(record.Model, "record.Model");
        ArgumentException.ThrowIfNullOrEmpty(record.Codec, "record.Codec");
    }

    public static void ValidateFork(SessionKey source, long position, SessionKey fork)
    {
        ValidateKey(source);
        ValidateKey(fork);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        if (source.Tenant != fork.Tenant)
        {
            throw new ArgumentException("A session forks into a session of its own tenant only.", nameof(fork));
        }

        if (source == fork)
        {
            throw new ArgumentException("A session cannot fork into itself.", nameof(fork));
        }
    }

    /// <summary>A resident silo's name is stored as a hash field: an id's rules; null (no silo) is allowed.</summary>
    public static void ValidateSilo(string? silo)
    {
        if (silo is not null)
        {
            // An Orleans silo address: host:port@generation (an IPv6 host in brackets).
            ArgumentException.ThrowIfNullOrEmpty(silo, nameof(silo));
            if (silo.Length > MaxIdLength || silo.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':' or '@' or '[' or ']')))
            {
                throw new ArgumentException($"Silo address '{silo}' is not host:port@generation.", nameof(silo));
            }
        }
    }

    /// <summary>Epochs start at 1 (<see cref="ISessionStore.TakeEpochAsync"/>); stores use 0 to mark an unfenced write.</summary>
    public static void ValidateEpoch(long epoch) => ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epoch);

    /// <summary>Request ids name hash fields beside prefixed ones ("a:", "e:"): the id alphabet keeps them apart.</summary>
    public static void ValidateRequestId(string? requestId)
    {
        ArgumentException.ThrowIfNullOrEmpty(requestId, nameof(requestId));
        if (requestId.Length > MaxRequestIdLength)
        {
            throw new ArgumentException($"Request id is longer than {MaxRequestIdLength} characters.", nameof(requestId));
        }

        if (requestId.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            throw new ArgumentException("A request id may only hold letters, digits, '-', '_' and '.'.", nameof(requestId));
        }
    }

    /// <summary>A fingerprint is stored after the start position and a ':': hex digits keep it parseable.</summary>
    public static void ValidateFingerprint(string? fingerprint)
    {
        ArgumentException.ThrowIfNullOrEmpty(fingerprint, nameof(fingerprint));
        if (fingerprint.Length > 64 || !fingerprint.All(char.IsAsciiHexDigit))
        {
            throw new ArgumentException("A request fingerprint is 1-64 hex digits.", nameof(fingerprint));
        }
    }

    public static void ValidateWriter(TokenLogWriter writer)
    {
        if (writer.DecodeRequestId is { } decode)
        {
            ValidateRequestId(decode);
        }

        if (writer.AppendRequestId is { } append)
        {
            ValidateRequestId(append);
            if (writer.AppendResult.IsEmpty)
            {
                throw new ArgumentException("An Append's request id is recorded with its result.", nameof(writer));
            }
        }
    }

    public static void ValidatePage(string tenant, string? pageToken, int pageSize)
    {
        ValidateTenant(tenant, nameof(tenant));
        if (pageToken is not null)
        {
            ValidateId(pageToken, nameof(pageToken));
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pageSize, 1000);
    }

    public static void ValidateChunk(int index, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, SnapshotHeader.MaxChunkSize, "chunk.Length");
    }
}
