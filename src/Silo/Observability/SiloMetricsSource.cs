using KvCache.Silo.Models;
using KvCache.Silo.Sessions.Internal;

namespace KvCache.Silo.Observability;

/// <summary>The silo's series: live state read at scrape time plus the counters of <see cref="SiloMetrics"/>.</summary>
internal sealed class SiloMetricsSource(ResidentSessions resident, ModelCatalog models, SiloMetrics metrics) : IMetricsSource
{
    public void WriteTo(PrometheusTextWriter writer)
    {
        writer.Gauge("kvcache_sessions_active", "Sessions whose KV cache is in this silo's memory.", resident.Count);
        writer.Counter("kvcache_sessions_spilled_total", "Sessions this silo snapshotted to the spill store and freed.", metrics.Spills.Count);
        writer.Gauge("kvcache_cache_bytes_used", "KV-cache memory in use, per model.", "model", models.All.Select(m => (m.Id, (double)(m.CacheBytesTotal - m.CacheBytesFree))));
        writer.Gauge("kvcache_cache_bytes_free", "KV-cache memory free, per model.", "model", models.All.Select(m => (m.Id, (double)m.CacheBytesFree)));
        writer.Gauge("kvcache_decode_queue_depth", "Decode turns running or waiting for their session's turn.", metrics.DecodesInFlight);
        writer.Counter("kvcache_batch_passes_total", "Batched forward passes run, per model (decode rows / passes = mean batch).", "model", models.All.Select(m => (m.Id, (double)models.Scheduler(m).Passes)));
        writer.Counter("kvcache_batch_decode_rows_total", "Decode steps run in batched passes, per model.", "model", models.All.Select(m => (m.Id, (double)models.Scheduler(m).DecodeRows)));
        writer.Counter("kvcache_batch_prefill_rows_total", "Prompt tokens run in batched passes, per model.", "model", models.All.Select(m => (m.Id, (double)models.Scheduler(m).PrefillRows)));
        writer.Counter("kvcache_tokens_decoded_total", "Tokens sampled by the model (rate() gives tokens/s).", metrics.TokensDecoded);
        writer.Summary("kvcache_spill_duration_seconds", "Time to snapshot a session to the spill store.", metrics.Spills.Count, metrics.Spills.SumSeconds);
        writer.Summary("kvcache_restore_duration_seconds", "Time to rebuild a session from its snapshot and token log.", metrics.Restores.Count, metrics.Restores.SumSeconds);
        writer.Summary("kvcache_migration_duration_seconds", "Time to move a session live to another silo (drain, rebalance, request).", metrics.Migrations.Count, metrics.Migrations.SumSeconds);
    }
}
