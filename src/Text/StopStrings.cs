namespace KvCache.Text;

/// <summary>
/// Finds the first stop string in text that arrives in pieces (a stop string may span pieces). Keeps the last
/// (longest stop − 1) characters of what it has seen, in a buffer it reuses.
/// </summary>
public sealed class StopStrings
{
    /// <summary>Most stop strings one Decode may carry.</summary>
    public const int MaxCount = 16;

    /// <summary>Longest stop string, in characters.</summary>
    public const int MaxLength = 256;

    private readonly string[] _stops;
    private readonly char[] _window;
    private int _kept;

    public StopStrings(IReadOnlyList<string> stops)
    {
        _stops = [.. stops];
        var longest = _stops.Max(s => s.Length);
        // The kept tail plus the longest piece a token can produce; grown when a longer piece comes.
        _window = new char[(longest - 1) + 256];
        Keep = longest - 1;
    }

    private int Keep { get; }

    /// <summary>Checks the request's stop strings: 1-<see cref="MaxCount"/> strings of 1-<see cref="MaxLength"/> characters.</summary>
    /// <returns>Null when valid, else why not.</returns>
    public static string? Validate(IReadOnlyList<string> stops)
    {
        if (stops.Count > MaxCount)
        {
            return $"stop carries {stops.Count} strings; at most {MaxCount}.";
        }

        for (var i = 0; i < stops.Count; i++)
        {
            if (stops[i].Length is 0 or > MaxLength)
            {
                return $"stop[{i}] must be 1-{MaxLength} characters, not {stops[i].Length}.";
            }
        }

        return null;
    }

    /// <summary>Feeds the next piece of text.</summary>
    /// <returns>The length of <paramref name="piece"/>'s prefix that ends with the first stop string matched, or -1.</returns>
    public int Match(string piece)
    {
        if (piece.Length == 0)
        {
            return -1;
        }

        var window = piece.Length + _kept <= _window.Length ? _window : new char[_kept + piece.Length];
        if (!ReferenceEquals(window, _window))
        {
            _window.AsSpan(0, _kept).CopyTo(window);
        }

        piece.CopyTo(window.AsSpan(_kept));
        var text = window.AsSpan(0, _kept + piece.Length);
        var end = int.MaxValue;
        foreach (var stop in _stops)
        {
            var at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0)
            {
                end = Math.Min(end, at + stop.Length);
            }
        }

        if (end != int.MaxValue)
        {
            return end - _kept;
        }

        var keep = Math.Min(Keep, text.Length);
        text[^keep..].CopyTo(_window);
        _kept = keep;
        return -1;
    }
}
