using KvCache.Silo.Cluster.Membership;
using KvCache.Silo.Storage;

namespace KvCache.Silo.Cluster.Directory;

/// <summary>One activation of a grain (Orleans' ActivationId): unique per activation, never reused.</summary>
public readonly record struct ActivationId(Guid Value)
{
    public static ActivationId NewId() => new(Guid.NewGuid());

    public static ActivationId Parse(string text) => new(Guid.ParseExact(text, "N"));

    public override string ToString() => Value.ToString("N");
}

/// <summary>
/// Where a session is active (Orleans' GrainAddress): the grain, the silo and the activation, plus the
/// directory's <paramref name="Epoch"/> for it.
/// </summary>
/// <param name="Epoch">
/// The fencing token: assigned by the directory on registration (ignored in what a caller registers),
/// incremented on every successful registration of the grain and never reused, even after an unregister.
/// </param>
public sealed record GrainAddress(SessionKey GrainId, SiloAddress SiloAddress, ActivationId ActivationId, long Epoch = 0)
{
    /// <summary>The same activation, whatever epoch each copy carries.</summary>
    public bool Matches(GrainAddress? other) =>
        other is not null && other.GrainId == GrainId && other.ActivationId == ActivationId;
}
