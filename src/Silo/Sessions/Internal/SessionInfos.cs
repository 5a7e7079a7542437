using KvCache.GpuWorker;
using KvCache.Silo.Models;
using KvCache.Silo.Storage;

namespace KvCache.Silo.Sessions.Internal;

/// <summary>Builds what a client may know about a session, from memory or from the store.</summary>
internal static class SessionInfos
{
    private const int MaxQuoted = 64;

    /// <summary>The session at <paramref name="position"/>; one at position 0 is <see cref="SessionResidency.Empty"/>
    /// wherever an activation happens to be, since it holds no cache.</summary>
    public static SessionInfo Create(SessionRecord record, ILanguageModel model, long position, SessionResidency residency, string? ownerSilo) =>
        new(
            record.Key.SessionId,
            record.Model,
            record.Codec,
            position,
            position == 0 ? SessionResidency.Empty : residency,
            position == 0 ? null : ownerSilo,
            model.CacheBytesAt(record.Codec, (int)position),
            model.BytesPerToken(record.Codec),
            model.Config.MaxPositionEmbeddings);

    /// <summary>The session as the store holds it: active on its resident silo while that silo is live.</summary>
    /// <param name="liveSiloName">The name of the silo at a resident address while it is live, else null.</param>
    public static SessionInfo Stored(SessionState state, ModelCatalog models, Func<string, string?> liveSiloName)
    {
        var owner = state.ResidentSilo is { } address ? liveSiloName(address) : null;
        var residency = owner is null ? SessionResidency.Spilled : SessionResidency.Active;
        return models.Get(state.Record.Model) is { } model
            ? Create(state.Record, model, state.TokenCount, residency, owner)
            : new SessionInfo(state.Record.Key.SessionId, state.Record.Model, state.Record.Codec, state.TokenCount, state.TokenCount == 0 ? SessionResidency.Empty : residency, owner, 0, 0, 0);
    }

    /// <summary>A caller's value as an error message may quote it: never long enough to flood response metadata.</summary>
    public static string Quote(string value) => value.Length <= MaxQuoted ? value : string.Concat(value.AsSpan(0, MaxQuoted), "…");
}
