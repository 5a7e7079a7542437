using Microsoft.Extensions.Options;

namespace KvCache.Gateway.Quotas.Internal;

/// <summary>Refuses negative limits at start, naming the setting.</summary>
internal sealed class QuotaOptionsValidator : IValidateOptions<QuotaOptions>
{
    public ValidateOptionsResult Validate(string? name, QuotaOptions options)
    {
        var errors = new List<string>();
        Check($"{QuotaOptions.SectionName}:Default", options.Default, errors);
        foreach (var (tenant, quota) in options.Tenants)
        {
            Check($"{QuotaOptions.SectionName}:Tenants:{tenant}", quota, errors);
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void Check(string path, TenantQuotaOptions? quota, List<string> errors)
    {
        if (quota is null)
        {
            return;
        }

        if (quota.MaxSessions < 0)
        {
            errors.Add($"{path}:MaxSessions must be ≥ 0.");
        }

        if (quota.MaxCacheBytes < 0)
        {
            errors.Add($"{path}:MaxCacheBytes must be ≥ 0.");
        }

        if (quota.DecodeTokensPerSecond is { } rate && (rate < 0 || !double.IsFinite(rate)))
        {
            errors.Add($"{path}:DecodeTokensPerSecond must be a finite number ≥ 0.");
        }

        if (quota.DecodeBurstTokens < 1)
        {
            errors.Add($"{path}:DecodeBurstTokens must be ≥ 1.");
        }

        if (quota.MaxConcurrentDecodes < 0)
        {
            errors.Add($"{path}:MaxConcurrentDecodes must be ≥ 0.");
        }
    }
}
