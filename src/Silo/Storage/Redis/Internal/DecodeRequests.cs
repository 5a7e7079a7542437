using System.Globalization;

namespace KvCache.Silo.Storage.Redis.Internal;

/// <summary>How the Redis store records a decode request: "start:fingerprint" (a bare "start" was written before requests
/// had fingerprints).</summary>
internal static class DecodeRequests
{
    public static string Format(long start, string fingerprint) =>
        string.Create(CultureInfo.InvariantCulture, $"{start}:{fingerprint}");

    public static DecodeRequestRecord Parse(string recorded, long? end)
    {
        var colon = recorded.IndexOf(':', StringComparison.Ordinal);
        return colon < 0
            ? new DecodeRequestRecord(long.Parse(recorded, CultureInfo.InvariantCulture), null, end)
            : new DecodeRequestRecord(long.Parse(recorded.AsSpan(0, colon), CultureInfo.InvariantCulture), recorded[(colon + 1)..], end);
    }
}
