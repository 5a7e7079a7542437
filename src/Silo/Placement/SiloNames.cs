namespace KvCache.Silo.Placement;

/// <summary>How operators and callers name a silo.</summary>
public static class SiloNames
{
    /// <summary>A silo is named by its name (<c>Silo:SiloName</c>), its <c>host:port</c> silo endpoint, or its full address.</summary>
    public static bool Matches(SiloAddress address, string? name, string hint) =>
        hint == name
        || hint == $"{address.Endpoint.Address}:{address.Endpoint.Port}"
        || hint == address.ToParsableString()
        || hint == address.ToString();
}
