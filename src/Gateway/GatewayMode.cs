namespace KvCache.Gateway;

/// <summary>
/// <c>Cluster:Mode</c>: <c>Embedded</c> (the default) hosts a silo in the gateway's process; <c>Routed</c> makes the
/// gateway an Orleans client of the silo processes that share <c>Spill:Redis</c>.
/// </summary>
internal static class GatewayMode
{
    public const string Key = "Cluster:Mode";

    public static bool IsRouted(IConfiguration configuration) => configuration[Key] switch
    {
        null or "" or "Embedded" => false,
        "Routed" => true,
        _ => throw new InvalidOperationException($"{Key} must be Embedded or Routed."),
    };
}
