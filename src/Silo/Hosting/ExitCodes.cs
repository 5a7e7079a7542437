namespace KvCache.Silo.Hosting;

/// <summary>How the service's processes (gateway, silo) end, for a supervisor's restart policy to tell apart.</summary>
public static class ExitCodes
{
    /// <summary>Configuration the process cannot start with (a silo process without a Redis endpoint, an API key
    /// without a tenant); the reason is the last line on stderr.</summary>
    public const int BadConfiguration = 2;

    /// <summary>A configured model cannot be served; the reason is the last line on stderr.</summary>
    public const int ModelLoadFailed = 3;
}
