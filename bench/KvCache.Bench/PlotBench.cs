using KvCache.Bench.Internal;
using ScottPlot;

namespace KvCache.Bench;

/// <summary>
/// Draws the JSON results of the decode and resume benches (their <c>--json</c> files) as PNG pictures:
///   plot --out DIR [--decode a.json,b.json] [--capacity c.json] [--resume r.json]
/// decode (one file per precision run): tok/s and share of the read ceiling by context at 1 session, per codec and
/// precision; aggregate tok/s by sessions at each context. capacity (a decode run with --capacity-gib): sessions per
/// GiB and their aggregate tok/s. resume: resume and recompute seconds per codec and context, and their ratio.
/// </summary>
public static class PlotBench
{
    private const string Usage = "usage: plot --out DIR [--decode a.json,b.json] [--capacity c.json] [--resume r.json]";
    private const int Width = 900;
    private const int Height = 520;

    public static int Run(string[] args)
    {
        string? output = null;
        string[] decode = [], capacity = [], resume = [];
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            string[] files = args[i + 1].Split(',', StringSplitOptions.RemoveEmptyEntries);
            switch (args[i])
            {
                case "--out":
                    output = args[i + 1];
                    break;
                case "--decode":
                    decode = files;
                    break;
                case "--capacity":
                    capacity = files;
                    break;
                case "--resume":
                    resume = files;
                    break;
                default:
                    Console.Error.WriteLine(Usage);
                    return 2;
            }
        }

        if (output is null || args.Length % 2 != 0 || decode.Length + capacity.Length + resume.Length == 0)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }

        Directory.CreateDirectory(output);
        var written = new List<string>();
        var cells = decode.SelectMany(f => BenchResults.Read<DecodeBench.Result>(f).Results).ToList();
        if (cells.Count > 0)
        {
            written.Add(ByContext(output, "decode-tok-s.png", cells, r => r.TokensPerSecond, "tok/s, 1 session"));
            written.Add(ByContext(output, "decode-of-ceiling.png", cells, r => 100 * r.OfCeiling, "% of the same-run read ceiling, 1 session"));
            written.AddRange(BySessions(output, cells));
        }

        if (capacity.SelectMany(f => BenchResults.Read<DecodeBench.Result>(f).Results).ToList() is { Count: > 0 } fits)
        {
            written.Add(Capacity(output, fits));
        }

        if (resume.SelectMany(f => BenchResults.Read<ResumeBench.Result>(f).Results).ToList() is { Count: > 0 } restores)
        {
            written.Add(Resume(output, restores));
        }

        foreach (string file in written)
        {
            Console.WriteLine(file);
        }

        return 0;
    }

    /// <summary>One line per codec and precision over contexts (log2 axis), 1-session cells.</summary>
    private static string ByContext(string output, string name, List<DecodeBench.Result> cells, Func<DecodeBench.Result, double> value, string label)
    {
        var plot = new Plot();
        var single = cells.Where(r => r.Sessions == 1).ToList();
        foreach (var line in single.GroupBy(r => (r.Codec, Precision: Precision(r))).OrderBy(g => g.Key))
        {
            var points = line.OrderBy(r => r.Context).ToArray();
            var scatter = plot.Add.Scatter(points.Select(r => Math.Log2(r.Context)).ToArray(), points.Select(value).ToArray());
            scatter.LegendText = $"{line.Key.Codec} {line.Key.Precision}";
        }

        ContextTicks(plot, single.Select(r => r.Context));
        plot.YLabel(label);
        plot.Axes.Margins(bottom: 0);
        plot.ShowLegend(Alignment.UpperRight);
        return Save(plot, output, name);
    }

    /// <summary>Aggregate tok/s over session counts, one picture per context, one line per codec and precision.</summary>
    private static IEnumerable<string> BySessions(string output, List<DecodeBench.Result> cells)
    {
        foreach (var context in cells.Where(r => r.CapacityGiB is null).GroupBy(r => r.Context).Where(g => g.Select(r => r.Sessions).Distinct().Count() > 1))
        {
            var plot = new Plot();
            foreach (var line in context.GroupBy(r => (r.Codec, Precision: Precision(r))).OrderBy(g => g.Key))
            {
                var points = line.OrderBy(r => r.Sessions).ToArray();
                var scatter = plot.Add.Scatter(points.Select(r => Math.Log2(r.Sessions)).ToArray(), points.Select(r => r.TokensPerSecond).ToArray());
                scatter.LegendText = $"{line.Key.Codec} {line.Key.Precision}";
            }

            int[] sessions = [.. context.Select(r => r.Sessions).Distinct().Order()];
            plot.Axes.Bottom.SetTicks(sessions.Select(s => Math.Log2(s)).ToArray(), sessions.Select(s => s.ToString()).ToArray());
            plot.XLabel("sessions decoding together");
            plot.YLabel($"aggregate tok/s at context {context.Key}");
            plot.Axes.Margins(bottom: 0);
            plot.ShowLegend(Alignment.UpperLeft);
            yield return Save(plot, output, $"decode-sessions-{context.Key}.png");
        }
    }

    /// <summary>Sessions per GiB (bars) for each codec and context, labelled with their aggregate tok/s.</summary>
    private static string Capacity(string output, List<DecodeBench.Result> cells)
    {
        var plot = new Plot();
        var ordered = cells.OrderBy(r => r.Context).ThenBy(r => r.Codec).ToArray();
        var bars = ordered.Select((r, i) => new Bar
        {
            Position = i,
            Value = r.Sessions / (r.CapacityGiB ?? 1),
            Label = $"{r.TokensPerSecond:F0} tok/s",
            FillColor = Colors.Category10[Array.IndexOf([.. ordered.Select(c => c.Codec).Distinct()], r.Codec) % 10],
        }).ToArray();
        var plotted = plot.Add.Bars(bars);
        plotted.ValueLabelStyle.FontSize = 11;
        plot.Axes.Bottom.SetTicks(bars.Select(b => b.Position).ToArray(), ordered.Select(r => $"{r.Codec}\n{r.Context / 1024}k {Precision(r)}").ToArray());
        plot.YLabel($"sessions per GiB of cache (label: their aggregate tok/s)");
        plot.Axes.Margins(bottom: 0);
        return Save(plot, output, "capacity.png");
    }

    /// <summary>Recompute and resume seconds side by side per codec and context, labelled with the ratio.</summary>
    private static string Resume(string output, List<ResumeBench.Result> cells)
    {
        var plot = new Plot();
        var ordered = cells.OrderBy(r => r.Context).ThenBy(r => r.Codec).ToArray();
        var recompute = ordered.Select((r, i) => new Bar { Position = 3 * i, Value = r.RecomputeSeconds, FillColor = Colors.Orange }).ToArray();
        var resume = ordered.Select((r, i) => new Bar
        {
            Position = 3 * i + 1,
            Value = r.ResumeSeconds,
            Label = $"{r.RecomputeSeconds / r.ResumeSeconds:F0}x",
            FillColor = Colors.SteelBlue,
        }).ToArray();
        plot.Add.Bars(recompute).LegendText = "recompute: read the token log + prefill";
        plot.Add.Bars(resume).LegendText = "resume: restore the snapshot from Redis (label: how many times faster)";
        plot.Axes.Bottom.SetTicks(ordered.Select((_, i) => 3 * i + 0.5).ToArray(), ordered.Select(r => $"{r.Codec}\n{r.Context / 1024}k").ToArray());
        plot.YLabel("seconds");
        plot.Axes.Margins(bottom: 0);
        plot.ShowLegend(Alignment.UpperLeft);
        return Save(plot, output, "resume.png");
    }

    private static void ContextTicks(Plot plot, IEnumerable<int> contexts)
    {
        int[] distinct = [.. contexts.Distinct().Order()];
        plot.Axes.Bottom.SetTicks(distinct.Select(c => Math.Log2(c)).ToArray(), distinct.Select(c => c >= 1024 ? $"{c / 1024}k" : c.ToString()).ToArray());
        plot.XLabel("context (tokens)");
    }

    private static string Precision(DecodeBench.Result r) =>
        r.Weights == r.Cache ? r.Weights.ToLowerInvariant() : $"{r.Weights.ToLowerInvariant()}/{r.Cache.ToLowerInvariant()} cache";

    private static string Save(Plot plot, string output, string name)
    {
        string path = Path.Combine(output, name);
        plot.SavePng(path, Width, Height);
        return path;
    }
}
