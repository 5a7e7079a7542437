using System.ComponentModel.DataAnnotations;

namespace KvCache.Silo.Hosting;

/// <summary>The silo's own settings (section <c>Silo</c>).</summary>
public sealed class SiloOptions
{
    public const string SectionName = "Silo";

    /// <summary>Name reported as a session's owner (default: the host name).</summary>
    public string? SiloName { get; set; }

    /// <summary>An active session unused this long is snapshotted to the spill store and its memory freed.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How often idle sessions are looked for.</summary>
    public TimeSpan IdleCheckPeriod { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Most tokens one Append may carry.</summary>
    [Range(1, 1 << 20)]
    public int MaxAppendTokens { get; set; } = 8192;

    /// <summary>Most characters of text one Append may carry (its text, or all its messages' contents together),
    /// checked before tokenization.</summary>
    [Range(1, 1 << 24)]
    public int MaxAppendTextChars { get; set; } = 65536;

    /// <summary>Most tokens one Decode may ask for.</summary>
    [Range(1, 1 << 20)]
    public int MaxDecodeTokens { get; set; } = 4096;

    /// <summary>Most sessions held in memory at once; beyond it the least recently used idle one is spilled, and a new
    /// activation is refused (RESOURCE_EXHAUSTED) while none is idle.</summary>
    [Range(1, 1 << 20)]
    public int MaxActiveSessions { get; set; } = 1024;

    /// <summary>Tokens read from the token log per step when a session is rebuilt.</summary>
    [Range(1, 1 << 20)]
    public int ReplayChunkTokens { get; set; } = 1024;
}
