using System.Globalization;
using System.Text;

namespace KvCache.Silo.Observability;

/// <summary>
/// Writes the Prometheus text exposition format (version 0.0.4): one <c># HELP</c> and <c># TYPE</c> line per
/// family, then its samples. Hand-written because the format is small and no exporter package restores here.
/// </summary>
public sealed class PrometheusTextWriter
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private readonly StringBuilder _text = new();

    /// <summary>A gauge with one unlabelled sample.</summary>
    public void Gauge(string name, string help, double value)
    {
        Family(name, "gauge", help);
        Sample(name, value);
    }

    /// <summary>A gauge with one sample per label value.</summary>
    public void Gauge(string name, string help, string label, IEnumerable<(string LabelValue, double Value)> samples) =>
        Labelled(name, "gauge", help, label, samples);

    /// <summary>A counter (<paramref name="name"/> ends in <c>_total</c>) with one sample per label value.</summary>
    public void Counter(string name, string help, string label, IEnumerable<(string LabelValue, double Value)> samples) =>
        Labelled(name, "counter", help, label, samples);

    /// <summary>A counter; <paramref name="name"/> ends in <c>_total</c>.</summary>
    public void Counter(string name, string help, double value)
    {
        Family(name, "counter", help);
        Sample(name, value);
    }

    /// <summary>A summary without quantiles: how many events and their summed duration in seconds.</summary>
    public void Summary(string name, string help, long count, double sumSeconds)
    {
        Family(name, "summary", help);
        Sample(name + "_sum", sumSeconds);
        Sample(name + "_count", count);
    }

    public override string ToString() => _text.ToString();

    private void Labelled(string name, string type, string help, string label, IEnumerable<(string LabelValue, double Value)> samples)
    {
        Family(name, type, help);
        foreach (var (labelValue, value) in samples)
        {
            Sample(name, value, label, labelValue);
        }
    }

    private void Family(string name, string type, string help) =>
        _text.Append("# HELP ").Append(name).Append(' ').Append(help.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal)).Append('\n')
            .Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    private void Sample(string name, double value, string? label = null, string? labelValue = null)
    {
        _text.Append(name);
        if (label is not null)
        {
            var escaped = labelValue!.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
            _text.Append('{').Append(label).Append("=\"").Append(escaped).Append("\"}");
        }

        _text.Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
    }
}
