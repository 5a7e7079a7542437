using Microsoft.Extensions.Options;

namespace KvCache.Silo.Cluster.Membership;

/// <summary>Settings of <see cref="MembershipAgent"/> (configuration section <see cref="SectionName"/>).</summary>
public sealed class MembershipOptions
{
    public const string SectionName = "Cluster:Membership";

    /// <summary>How often a silo renews its lease (heartbeat) and reads the table.</summary>
    public TimeSpan IAmAlivePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A silo whose last heartbeat is older than this is declared dead; so is a silo that could not
    /// renew its own lease for this long (it must assume the others declared it dead).</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(IAmAlivePeriod, TimeSpan.FromMilliseconds(10), nameof(IAmAlivePeriod));

        // Shorter than two periods, one late heartbeat would kill a healthy silo.
        if (LeaseDuration < 2 * IAmAlivePeriod)
        {
            throw new ArgumentOutOfRangeException(nameof(LeaseDuration), LeaseDuration, $"LeaseDuration must be at least twice IAmAlivePeriod ({IAmAlivePeriod}).");
        }
    }
}

/// <summary>Checks <see cref="MembershipOptions"/> at start (ValidateOnStart).</summary>
public sealed class MembershipOptionsValidator : IValidateOptions<MembershipOptions>
{
    public ValidateOptionsResult Validate(string? name, MembershipOptions options)
    {
        try
        {
            options.Validate();
            return ValidateOptionsResult.Success;
        }
        catch (ArgumentException e)
        {
            return ValidateOptionsResult.Fail($"{MembershipOptions.SectionName}: {e.Message}");
        }
    }
}
