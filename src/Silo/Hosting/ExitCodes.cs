namespace KvCache.Silo.Hosting;

/// <summary>How the service's processes (gateway, silo) end, for a supervisor's restart policy to tell apart.</summary>
public static class ExitCodes
{
    /// <summary>Configuration the process cannot start with (e.g. no Redis endpoint for a silo process).</summary>
    public const int BadConfiguration = 2;

    /// <summary>A configured model cannot be served; the reason is the last line on stderr.</summary>
    public const int ModelLoadFailed = 3;

    /// <summary>The cluster declared this silo dead while it still ran (paused, partitioned): it stopped rather than
    /// serve as a zombie. A supervisor should start it again.</summary>
    public const int DeclaredDead = 4;
}
