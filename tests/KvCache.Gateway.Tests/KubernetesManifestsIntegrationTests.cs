using System.Diagnostics;
using KvCache.Gateway.Tests.Infrastructure;
using Xunit;

namespace KvCache.Gateway.Tests;

/// <summary>
/// k8s/validate/run.sh: every overlay renders with kubectl kustomize, every object validates against the
/// Kubernetes schemas, and the deployment invariants hold (probes, GPU limits, PDB, grace period over the
/// drain timeout, maxUnavailable 0, pinned images, no plaintext secrets). Fails when kubectl or node is missing.
/// </summary>
public sealed class KubernetesManifestsIntegrationTests
{
    [Fact]
    public async Task Every_overlay_renders_validates_against_the_schemas_and_keeps_the_invariants()
    {
        var start = new ProcessStartInfo("bash", [Path.Combine(PublishedApps.RepositoryRoot, "k8s/validate/run.sh")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var output = await stdout + await stderr;

        Assert.True(process.ExitCode == 0, $"k8s/validate/run.sh exited with {process.ExitCode}:\n{output}");
        Assert.Contains("overlay dev:", output);
        Assert.Contains("overlay gpu:", output);
        Assert.Contains("k8s validation passed", output);
    }
}
