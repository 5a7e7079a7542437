namespace KvCache.SiloHost;

/// <summary>
/// Orleans' Kubernetes hosting (pod name as silo name, pod IP as address, pods of dead silos watched through the
/// Kubernetes API): on when the process runs in a pod, unless <c>Cluster:KubernetesHosting=false</c>.
/// </summary>
internal static class KubernetesHosting
{
    public static bool IsEnabled(IConfiguration configuration) =>
        configuration.GetValue("Cluster:KubernetesHosting", defaultValue: true)
        && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST"));
}
