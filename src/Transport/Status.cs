namespace KvCache.Transport;

/// <summary>The outcome of a call: a code and a human-readable detail (mirrors Grpc.Core.Status).</summary>
public readonly record struct Status(StatusCode StatusCode, string Detail)
{
    public static Status DefaultSuccess => new(StatusCode.OK, string.Empty);

    public override string ToString() => $"Status(StatusCode=\"{StatusCode}\", Detail=\"{Detail}\")";
}
