// Offline validation of the Kubernetes deployment: renders every overlay with `kubectl kustomize` (and every overlay
// with each optional component of k8s/components), validates every object against the Kubernetes OpenAPI schemas
// (kubernetes-models), then checks the invariants the operations guide relies on, against the settings the source
// declares (ports, shutdown timeouts, option names). Exits non-zero with every failure listed. Run through
// k8s/validate/run.sh.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const failures = [];
const fail = (where, message) => failures.push(`${where}: ${message}`);

const SECRET_NAME = /secret|password|passwd|token|apikey|api_key|key$|keysha256|credential/i;
const SILO = "kvcache-silo";
const GATEWAY = "kvcache-gateway";
const SERVICE_ID_LABEL = "orleans/serviceId";
const CLUSTER_ID_LABEL = "orleans/clusterId";
// Settings of the hand-written cluster the service left for Orleans: present in a manifest, they mean the manifest
// was not updated (a silo no longer reads them).
const REMOVED_SETTINGS = {
  Cluster__Secret: "the cluster secret is gone: Orleans' ports are kept to the cluster's pods by NetworkPolicy, optionally with Cluster__Tls",
  Cluster__AdvertisedEndpoint: "now Cluster__AdvertisedAddress (the IP) with Cluster__SiloPort and Cluster__GatewayPort",
};
// Orleans' ClusterMembershipOptions, bound from Cluster:Membership (src/Silo/Hosting/Internal/ClusterDefaults.cs).
const MEMBERSHIP_OPTIONS = new Set([
  "NumMissedTableIAmAliveLimit", "LivenessEnabled", "ProbeTimeout", "TableRefreshTimeout", "DeathVoteExpirationTimeout",
  "IAmAliveTablePublishTimeout", "MaxJoinAttemptTime", "UseLivenessGossip", "NumProbedSilos", "NumMissedProbesLimit",
  "NumVotesForDeathDeclaration", "DefunctSiloExpiration", "DefunctSiloCleanupPeriod", "MaxDefunctSiloEntries",
  "LocalHealthDegradationMonitoringPeriod", "ExtendProbeTimeoutDuringDegradation", "EnableIndirectProbes",
  "EnableConnectionLivenessCheck", "EvictWhenMaxJoinAttemptTimeExceeded",
]);
// Cluster keys read outside ClusterOptions: the gateway's mode (src/Gateway/GatewayMode.cs) and the silo host's
// switch for Orleans' Kubernetes hosting (src/SiloHost/KubernetesHosting.cs).
const EXTRA_CLUSTER_KEYS = new Set(["Mode", "KubernetesHosting"]);
// What Orleans' Kubernetes hosting does with the silos' pods (k8s/base/rbac.yaml).
const POD_VERBS = ["get", "list", "watch", "delete"];

// ---- what the source declares -----------------------------------------------------------------------------------

function readSource(file) {
  try {
    return readFileSync(join(root, file), "utf8");
  } catch {
    fail(file, "cannot read it");
    return "";
  }
}

function shutdownTimeoutSeconds(file) {
  const m = readSource(file).match(/ShutdownTimeout\s*=\s*TimeSpan\.FromSeconds\((\d+)\)/);
  if (!m) {
    fail(file, "cannot find the host's ShutdownTimeout (the drain timeout)");
    return 0;
  }
  return Number(m[1]);
}

function readJson(file) {
  try {
    return JSON.parse(readSource(file) || "{}");
  } catch (e) {
    fail(file, `not JSON: ${e.message}`);
    return {};
  }
}

// Property names of a C# class ("public T Name { get; set; }"), and the default of the string/int ones.
function classProperties(text, className) {
  const start = text.search(new RegExp(`class\\s+${className}\\b`));
  if (start < 0) return new Map();
  const body = text.slice(start, text.indexOf("\n}", start));
  const props = new Map();
  for (const m of body.matchAll(/public\s+[\w<>?.]+\s+(\w+)\s*\{\s*get;\s*set;\s*\}(?:\s*=\s*("?)([^";]*)\2;)?/g)) {
    props.set(m[1], m[3]);
  }
  return props;
}

function readSourceFacts() {
  const clusterOptions = readSource("src/Silo/Hosting/ClusterOptions.cs");
  const cluster = classProperties(clusterOptions, "ClusterOptions");
  const tls = classProperties(clusterOptions, "ClusterTlsOptions");
  for (const p of ["ClusterId", "ServiceId", "SiloPort", "GatewayPort", "AdvertisedAddress", "Tls"]) {
    if (!cluster.has(p)) fail("src/Silo/Hosting/ClusterOptions.cs", `no ClusterOptions.${p}`);
  }
  const clusterKeys = new Set([...cluster.keys()].filter((k) => k !== "Tls"));
  for (const k of EXTRA_CLUSTER_KEYS) clusterKeys.add(k);
  for (const k of tls.keys()) clusterKeys.add(`Tls__${k}`);

  const silo = readJson("src/SiloHost/silo.appsettings.json");
  const gateway = readJson("src/Gateway/appsettings.json");
  return {
    siloDrain: shutdownTimeoutSeconds("src/SiloHost/Program.cs"),
    gatewayDrain: shutdownTimeoutSeconds("src/Gateway/Program.cs"),
    clusterKeys,
    defaults: {
      ClusterId: cluster.get("ClusterId") ?? "",
      ServiceId: cluster.get("ServiceId") ?? "",
    },
    silo: {
      siloPort: Number(silo.Cluster?.SiloPort ?? cluster.get("SiloPort")),
      gatewayPort: Number(silo.Cluster?.GatewayPort ?? cluster.get("GatewayPort")),
      healthUrl: silo.Kestrel?.Endpoints?.Health?.Url,
    },
    gateway: {
      healthUrl: gateway.Kestrel?.Endpoints?.Health?.Url,
      grpcUrl: gateway.Kestrel?.Endpoints?.Grpc?.Url,
    },
  };
}

// ---- schema ----------------------------------------------------------------------------------------------------

async function schemaValidate(where, obj) {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : [null, obj.apiVersion];
  const path = `kubernetes-models/${group ? `${group}/` : ""}${version}/${obj.kind}`;
  let model;
  try {
    model = (await import(path))[obj.kind];
  } catch {
    fail(where, `no schema for ${obj.apiVersion} ${obj.kind}`);
    return;
  }
  try {
    new model(obj).validate();
  } catch (e) {
    fail(where, `schema: ${e.message}`);
  }
}

// The validator must reject a broken object, or a silent no-op would pass everything.
async function selfCheck() {
  const { Deployment } = await import("kubernetes-models/apps/v1/Deployment");
  try {
    new Deployment({ metadata: { name: "x" }, spec: { replicas: "two", selector: {}, template: {} } }).validate();
  } catch {
    return;
  }
  fail("self-check", "schema validation accepted replicas: \"two\"");
}

// ---- helpers ---------------------------------------------------------------------------------------------------

function checkImage(where, image) {
  const tag = image.includes("@") ? "digest" : image.split("/").pop().split(":")[1];
  if (!tag) fail(where, `image ${image} has no tag`);
  else if (tag === "latest") fail(where, `image ${image} uses latest`);
}

const matches = (selector, labels) =>
  Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);

// The container's environment as Kubernetes builds it: envFrom ConfigMaps first, env entries over them. Secret
// sources are recorded by name (their contents are not in the manifests).
function environment(container, objects) {
  const vars = {};
  const secretSources = [];
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef) {
      const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === source.configMapRef.name);
      for (const [k, v] of Object.entries(cm?.data ?? {})) vars[`${source.prefix ?? ""}${k}`] = { name: k, value: v };
    }
    if (source.secretRef) secretSources.push(source.secretRef.name);
  }
  for (const e of container.env ?? []) vars[e.name] = e;
  return { vars, secretSources, value: (name) => vars[name]?.value };
}

function parseUrl(where, url) {
  if (!url) return null;
  try {
    // Kestrel accepts "*" and "+" as any host; URL() does not.
    const u = new URL(url.replace("://*:", "://0.0.0.0:").replace("://+:", "://0.0.0.0:"));
    return { host: u.hostname, port: Number(u.port || (u.protocol === "https:" ? 443 : 80)) };
  } catch {
    fail(where, `${url} is not a URL`);
    return null;
  }
}

const isLoopback = (host) => host === "localhost" || host.startsWith("127.") || host === "[::1]";

function containerPortNumber(container, port) {
  if (typeof port === "number") return port;
  return (container.ports ?? []).find((p) => p.name === port)?.containerPort;
}

// Settings a process reads under Cluster: ClusterOptions' properties, the gateway mode, Orleans' membership and
// messaging options; the hand-written cluster's settings are gone.
function checkSettingName(where, name, facts) {
  if (REMOVED_SETTINGS[name]) {
    fail(where, `${name} is a removed setting: ${REMOVED_SETTINGS[name]}`);
    return;
  }
  const m = name.match(/^Cluster__(.+)$/);
  if (!m) return;
  const key = m[1];
  if (key.startsWith("Membership__")) {
    const option = key.slice("Membership__".length);
    if (!MEMBERSHIP_OPTIONS.has(option)) fail(where, `${name}: Orleans' ClusterMembershipOptions has no ${option}`);
  } else if (!key.startsWith("Messaging__") && !facts.clusterKeys.has(key)) {
    fail(where, `${name}: no such setting (ClusterOptions, Cluster:Mode, Cluster:KubernetesHosting, Cluster:Membership, Cluster:Messaging)`);
  }
}

function checkPodSpec(where, spec) {
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const at = `${where} container ${c.name}`;
    checkImage(at, c.image);
    for (const e of c.env ?? []) {
      if (SECRET_NAME.test(e.name.replace(/__/g, "")) && e.value !== undefined) fail(at, `env ${e.name} has a plaintext value; use secretKeyRef`);
    }
  }
  for (const c of spec.containers) {
    const at = `${where} container ${c.name}`;
    if (!c.readinessProbe) fail(at, "no readinessProbe");
    if (!c.livenessProbe) fail(at, "no livenessProbe");
    for (const [kind, probe] of [["startup", c.startupProbe], ["readiness", c.readinessProbe], ["liveness", c.livenessProbe]]) {
      const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
      if (port !== undefined && containerPortNumber(c, port) === undefined) fail(at, `the ${kind} probe's port ${port} is not a container port`);
    }
  }
}

// The HTTP/1.1 port serving /healthz and /metrics: the probes hit it, it listens beyond loopback, it is declared.
function checkHealthPort(where, container, env, defaultUrl, annotations) {
  const url = parseUrl(where, env.value("Kestrel__Endpoints__Health__Url") ?? defaultUrl);
  if (!url) {
    fail(where, "no Kestrel__Endpoints__Health__Url: the probes need the HTTP health port");
    return;
  }
  if (isLoopback(url.host)) fail(where, `the health endpoint listens on ${url.host} only; the kubelet cannot probe it (set Kestrel__Endpoints__Health__Url=http://0.0.0.0:${url.port})`);
  for (const [kind, probe] of [["readiness", container.readinessProbe], ["liveness", container.livenessProbe], ["startup", container.startupProbe]]) {
    if (!probe) continue;
    const port = containerPortNumber(container, probe.httpGet?.port);
    if (port !== url.port) fail(where, `the ${kind} probe must be an httpGet on the health port ${url.port}`);
  }
  if (!(container.ports ?? []).some((p) => p.containerPort === url.port)) fail(where, `the health port ${url.port} is not a container port`);
  if (annotations?.["prometheus.io/scrape"] === "true" && Number(annotations["prometheus.io/port"]) !== url.port) {
    fail(where, `prometheus.io/port must be the health port ${url.port}`);
  }
  if (container.readinessProbe?.httpGet?.path !== "/healthz/ready") fail(where, "readiness must be /healthz/ready");
  if (container.livenessProbe?.httpGet?.path !== "/healthz/live") fail(where, "liveness must be the local /healthz/live");
}

function checkGrace(where, pod, container, drainSeconds) {
  const preStop = container.lifecycle?.preStop;
  if (!preStop) fail(where, "no preStop hook");
  const preStopSeconds = preStop?.sleep?.seconds ?? 0;
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (!(grace > drainSeconds + preStopSeconds)) fail(where, `terminationGracePeriodSeconds ${grace} must exceed preStop ${preStopSeconds}s + drain ${drainSeconds}s`);
}

const fromSecret = (e) => Boolean(e?.valueFrom?.secretKeyRef);

// Mutual TLS on Orleans' connections: all or none of the cluster's processes, the password from a Secret, the
// certificate file on a volume from a Secret.
function tlsOf(where, pod, container, env) {
  const path = env.value("Cluster__Tls__CertificatePath");
  if (!path) return false;
  const password = env.vars.Cluster__Tls__CertificatePassword;
  if (password && !fromSecret(password) && !env.secretSources.length) fail(where, "Cluster__Tls__CertificatePassword must come from a Secret");
  const mount = (container.volumeMounts ?? []).find((m) => path.startsWith(`${m.mountPath.replace(/\/$/, "")}/`));
  const volume = mount && (pod.volumes ?? []).find((v) => v.name === mount.name);
  if (!volume?.secret && !volume?.projected?.sources?.some((s) => s.secret)) fail(where, `Cluster__Tls__CertificatePath ${path} must be on a volume from a Secret`);
  return true;
}

// ---- invariants of one rendered overlay ------------------------------------------------------------------------

function checkOverlay(name, objects, facts) {
  const where = (o) => `${name}/${o.kind}/${o.metadata.name}`;
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const find = (kind, n) => objects.find((o) => o.kind === kind && o.metadata.name === n);

  for (const o of objects) {
    if (o.kind === "Secret") fail(where(o), "a Secret is rendered; create secrets out of band");
    if (o.kind === "ConfigMap") {
      for (const [k, v] of Object.entries(o.data ?? {})) {
        if (SECRET_NAME.test(k.replace(/__/g, "")) && v !== "") fail(where(o), `key ${k} looks like a secret`);
        checkSettingName(where(o), k, facts);
      }
    }
    const pod = o.spec?.template?.spec;
    if (pod) {
      checkPodSpec(where(o), pod);
      for (const c of pod.containers) for (const e of c.env ?? []) checkSettingName(`${where(o)} container ${c.name}`, e.name, facts);
    }
  }

  for (const d of byKind("Deployment")) {
    const ru = d.spec.strategy?.rollingUpdate;
    if (d.spec.strategy?.type !== "RollingUpdate" || ru?.maxUnavailable !== 0) fail(where(d), "rolling update must have maxUnavailable: 0");
  }

  const redis = find("StatefulSet", "kvcache-redis");
  if (redis) {
    if (!(redis.spec.volumeClaimTemplates ?? []).length) fail(where(redis), "Redis needs a persistent volume");
    const pw = (redis.spec.template.spec.containers[0].env ?? []).find((e) => e.name === "REDIS_PASSWORD");
    if (!fromSecret(pw)) fail(where(redis), "the Redis password must come from a Secret");
    const args = redis.spec.template.spec.containers[0].args ?? [];
    const policy = args[args.indexOf("--maxmemory-policy") + 1];
    if (args.includes("--maxmemory-policy") && policy !== "noeviction") fail(where(redis), `maxmemory-policy ${policy} can evict Orleans' membership and the token logs; use noeviction`);
  }

  // Both kinds of cluster process: Redis (membership, directory, spill store) reached with a Secret's password.
  const clusterProcess = (d, c, env) => {
    if (!env.value("Spill__Redis__Endpoint")) fail(where(d), "no Spill__Redis__Endpoint: silos and gateways find each other through Redis");
    if (redis && !fromSecret(env.vars.Spill__Redis__Password)) fail(where(d), "Spill__Redis__Password must come from the Secret Redis requires");
  };

  let siloIds = null;
  let siloTls = null;
  const silo = find("Deployment", SILO);
  if (!silo) {
    fail(name, "no silo Deployment");
  } else {
    const pod = silo.spec.template.spec;
    const labels = silo.spec.template.metadata.labels ?? {};
    const c = pod.containers[0];
    const env = environment(c, objects);
    const at = where(silo);
    checkGrace(at, pod, c, facts.siloDrain);
    checkHealthPort(at, c, env, facts.silo.healthUrl, silo.spec.template.metadata.annotations);
    clusterProcess(silo, c, env);
    siloTls = tlsOf(at, pod, c, env);

    // Orleans' Kubernetes hosting: the pod's identity from the downward API, the cluster's ids from its labels.
    const fieldPath = (n) => env.vars[n]?.valueFrom?.fieldRef?.fieldPath;
    for (const [n, path] of [["POD_NAME", "metadata.name"], ["POD_NAMESPACE", "metadata.namespace"], ["POD_IP", "status.podIP"]]) {
      if (fieldPath(n) !== path) fail(at, `${n} must come from the downward API (${path}) for Orleans' Kubernetes hosting`);
    }
    if (env.value("Cluster__KubernetesHosting")?.toLowerCase() === "false") fail(at, "Cluster__KubernetesHosting=false: silos in a pod use Orleans' Kubernetes hosting");
    siloIds = {};
    for (const [n, label, option] of [["ORLEANS_SERVICE_ID", SERVICE_ID_LABEL, "ServiceId"], ["ORLEANS_CLUSTER_ID", CLUSTER_ID_LABEL, "ClusterId"]]) {
      const id = labels[label];
      siloIds[option] = id;
      if (!id) fail(at, `the silo pods need the label ${label} (Orleans' Kubernetes hosting selects the cluster's pods by it)`);
      const e = env.vars[n];
      const ok = e?.valueFrom?.fieldRef?.fieldPath === `metadata.labels['${label}']` || (e?.value !== undefined && e.value === id);
      if (!ok) fail(at, `${n} must be the pod's ${label} label (downward API metadata.labels['${label}'])`);
      const configured = env.value(`Cluster__${option}`) ?? facts.defaults[option];
      if (id && configured !== id) fail(at, `Cluster__${option} ${configured} differs from the pod label ${label}=${id}`);
    }
    if (env.value("Silo__SiloName") !== undefined && env.value("Silo__SiloName") !== "$(POD_NAME)") fail(at, "Silo__SiloName must be $(POD_NAME): Orleans matches pods to silos by name");
    if (env.value("Cluster__AdvertisedAddress") !== "$(POD_IP)") fail(at, "Cluster__AdvertisedAddress must be $(POD_IP)");

    // Orleans' ports, declared; no internal gRPC endpoint any more.
    const siloPort = Number(env.value("Cluster__SiloPort") ?? facts.silo.siloPort);
    const gatewayPort = Number(env.value("Cluster__GatewayPort") ?? facts.silo.gatewayPort);
    const ports = (c.ports ?? []).map((p) => p.containerPort);
    if (!ports.includes(siloPort)) fail(at, `the Orleans silo port ${siloPort} is not a container port`);
    if (!ports.includes(gatewayPort)) fail(at, `the Orleans gateway port ${gatewayPort} is not a container port`);
    for (const k of Object.keys(env.vars)) if (k.startsWith("Kestrel__Endpoints__Grpc__")) fail(at, `${k}: the silo serves no gRPC endpoint`);

    // RBAC for Orleans' Kubernetes hosting.
    const saName = pod.serviceAccountName;
    const sa = saName && find("ServiceAccount", saName);
    if (!saName || saName === "default") fail(at, "silos need their own serviceAccountName (RBAC for Orleans' Kubernetes hosting)");
    else if (!sa) fail(at, `the ServiceAccount ${saName} is not rendered`);
    const automount = pod.automountServiceAccountToken ?? sa?.automountServiceAccountToken ?? true;
    if (automount === false) fail(at, "silos must mount their service account token (Orleans' Kubernetes hosting calls the API)");
    const granted = new Set();
    for (const rb of byKind("RoleBinding")) {
      const bound = (rb.subjects ?? []).some((s) => s.kind === "ServiceAccount" && s.name === saName && (!s.namespace || s.namespace === (rb.metadata.namespace ?? s.namespace)));
      if (!bound) continue;
      const role = find(rb.roleRef.kind, rb.roleRef.name);
      for (const rule of role?.rules ?? []) {
        const core = (rule.apiGroups ?? []).some((g) => g === "" || g === "*");
        const pods = (rule.resources ?? []).some((r) => r === "pods" || r === "*");
        if (core && pods) for (const v of rule.verbs ?? []) granted.add(v);
      }
    }
    const missing = POD_VERBS.filter((v) => !granted.has(v) && !granted.has("*"));
    if (missing.length) fail(at, `the silos' ServiceAccount lacks ${missing.join(", ")} on pods (a Role bound by a RoleBinding), which Orleans' Kubernetes hosting needs`);

    const gpu = c.resources?.limits?.["nvidia.com/gpu"];
    if (name.split("+")[0] === "gpu") {
      if (!(Number(gpu) >= 1)) fail(at, "silos need an nvidia.com/gpu limit in the gpu overlay");
      if (!pod.nodeSelector || Object.keys(pod.nodeSelector).length === 0) fail(at, "silos need a GPU nodeSelector");
      if (!(pod.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu")) fail(at, "silos need a toleration for nvidia.com/gpu");
    } else if (gpu !== undefined) {
      fail(at, `overlay ${name} is CPU-only but requests nvidia.com/gpu`);
    }

    if (!byKind("PodDisruptionBudget").some((p) => matches(p.spec.selector, labels))) fail(at, "no PodDisruptionBudget selects the silos");

    // Orleans' ports admit only the cluster's pods, and do admit them.
    const policies = byKind("NetworkPolicy").filter((p) => matches(p.spec.podSelector, labels) && (p.spec.policyTypes ?? ["Ingress"]).includes("Ingress"));
    if (!policies.length) {
      fail(at, "no NetworkPolicy selects the silos");
    } else {
      const opens = (rule, port) => !rule.ports || rule.ports.some((p) => p.port === port || containerPortNumber(c, p.port) === port);
      const peerName = (p) => (!p.namespaceSelector && !p.ipBlock ? p.podSelector?.matchLabels?.["app.kubernetes.io/name"] : undefined);
      let siloToSilo = false;
      let gatewayToSilo = false;
      for (const policy of policies) {
        for (const rule of policy.spec.ingress ?? []) {
          const peers = (rule.from ?? []).map(peerName);
          const onlyOurs = peers.length > 0 && peers.every((p) => p === SILO || p === GATEWAY);
          for (const port of [siloPort, gatewayPort]) {
            if (opens(rule, port) && !onlyOurs) fail(where(policy), `the silos' Orleans port ${port} must admit only gateways and silos`);
          }
          if (onlyOurs && opens(rule, siloPort) && peers.includes(SILO)) siloToSilo = true;
          if (onlyOurs && opens(rule, gatewayPort) && peers.includes(GATEWAY)) gatewayToSilo = true;
        }
      }
      if (!siloToSilo) fail(at, `no NetworkPolicy admits silos to the silo port ${siloPort}: the silos cannot form a cluster`);
      if (!gatewayToSilo) fail(at, `no NetworkPolicy admits gateways to the gateway port ${gatewayPort}: the gateways cannot reach the silos`);
    }
  }

  const gateway = find("Deployment", GATEWAY);
  if (!gateway) {
    fail(name, "no gateway Deployment");
  } else {
    const pod = gateway.spec.template.spec;
    const labels = gateway.spec.template.metadata.labels ?? {};
    const c = pod.containers[0];
    const env = environment(c, objects);
    const at = where(gateway);
    checkGrace(at, pod, c, facts.gatewayDrain);
    checkHealthPort(at, c, env, facts.gateway.healthUrl, gateway.spec.template.metadata.annotations);
    if (env.value("Kestrel__Endpoints__Health__Protocols") !== "Http1") fail(at, "the gateway's health endpoint needs Kestrel__Endpoints__Health__Protocols=Http1 (its default is h2c)");
    clusterProcess(gateway, c, env);
    if (env.value("Cluster__Mode") !== "Routed") fail(at, "Cluster__Mode must be Routed: an Embedded gateway hosts its own silo, outside the silos' cluster");
    for (const label of [SERVICE_ID_LABEL, CLUSTER_ID_LABEL]) {
      if (labels[label] !== undefined) fail(at, `gateway pods must not carry ${label}: only silos are the cluster's pods`);
    }
    if (siloIds) {
      for (const option of ["ServiceId", "ClusterId"]) {
        const configured = env.value(`Cluster__${option}`) ?? facts.defaults[option];
        if (siloIds[option] && configured !== siloIds[option]) fail(at, `Cluster__${option} ${configured} differs from the silos' ${siloIds[option]}: the gateways would find no silo`);
      }
    }
    const gatewayTls = tlsOf(at, pod, c, env);
    if (siloTls !== null && gatewayTls !== siloTls) fail(at, `cluster TLS is ${siloTls ? "on" : "off"} on the silos but ${gatewayTls ? "on" : "off"} on the gateways`);
  }
  if (!byKind("Service").some((s) => s.metadata.name === GATEWAY)) fail(name, "no gateway Service");
  if (!byKind("HorizontalPodAutoscaler").some((h) => h.spec.scaleTargetRef.name === GATEWAY)) fail(name, "no HorizontalPodAutoscaler for the gateways");
}

// ---- Dockerfiles ----------------------------------------------------------------------------------------------

function checkDockerfiles(facts) {
  const healthPort = (url) => parseUrl("Dockerfile", url)?.port;
  const expected = {
    "src/Gateway/Dockerfile": [healthPort(facts.gateway.grpcUrl) ?? 50051],
    "src/SiloHost/Dockerfile": [facts.silo.siloPort, facts.silo.gatewayPort, healthPort(facts.silo.healthUrl)],
  };
  for (const [file, ports] of Object.entries(expected)) {
    const text = readSource(file);
    const lines = text.split("\n").map((l) => l.trim());
    for (const from of lines.filter((l) => /^FROM\s/i.test(l))) {
      const image = from.split(/\s+/)[1];
      checkImage(file, image);
    }
    if (!lines.some((l) => /^USER\s+(\$APP_UID|[1-9]\d*)$/.test(l))) fail(file, "the final image must run as a non-root USER");
    const lastUser = lines.filter((l) => /^USER\s/.test(l)).pop();
    if (/^USER\s+(root|0)$/.test(lastUser ?? "")) fail(file, "ends as root");
    for (const l of lines.filter((l) => /^(ENV|ARG)\s/.test(l) || /^\w+=/.test(l))) {
      for (const name of l.replace(/^(ENV|ARG)\s+/, "").match(/[A-Za-z_][A-Za-z0-9_]*(?==)/g) ?? []) {
        if (SECRET_NAME.test(name.replace(/__/g, ""))) fail(file, `${name} bakes a secret-like setting into the image`);
        checkSettingName(file, name, facts);
      }
    }
    if (file.includes("SiloHost") && lines.some((l) => /Kestrel__Endpoints__Grpc__/.test(l))) fail(file, "the silo serves no gRPC endpoint");
    if ((lines.filter((l) => /^RUN dotnet publish .* -o \/app$/.test(l))).length !== 1) fail(file, "expected exactly one `RUN dotnet publish … -o /app` (the tests run the same command)");
    const exposes = lines.filter((l) => /^EXPOSE\s/.test(l));
    if (!exposes.length) fail(file, "no EXPOSE");
    for (const expose of exposes) {
      const declared = expose.split(/\s+/).slice(1).map((p) => Number(p.split("/")[0]));
      for (const p of ports.filter((p) => p)) if (!declared.includes(p)) fail(file, `${expose} does not expose port ${p}`);
    }
  }
}

// ---- rendering -------------------------------------------------------------------------------------------------

function render(label, dir) {
  try {
    return execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    fail(`overlay ${label}`, `kubectl kustomize failed: ${e.stderr || e.message}`);
    return null;
  }
}

async function validateRendered(label, rendered, facts) {
  const objects = [];
  for (const doc of parseAllDocuments(rendered)) {
    if (doc.errors.length) fail(`overlay ${label}`, `YAML: ${doc.errors[0].message}`);
    const obj = doc.toJS();
    if (obj) objects.push(obj);
  }
  for (const obj of objects) await schemaValidate(`${label}/${obj.kind}/${obj.metadata?.name}`, obj);
  checkOverlay(label, objects, facts);
  console.log(`overlay ${label}: ${objects.length} objects rendered (${[...new Set(objects.map((o) => o.kind))].sort().join(", ")})`);
  return objects;
}

const subdirectories = (dir) => {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch {
    return [];
  }
};

await selfCheck();
const facts = readSourceFacts();
checkDockerfiles(facts);
const overlays = subdirectories(join(root, "k8s/overlays"));
if (overlays.length === 0) fail("k8s/overlays", "no overlays");
for (const overlay of overlays) {
  const rendered = render(overlay, join(root, "k8s/overlays", overlay));
  if (rendered !== null) await validateRendered(overlay, rendered, facts);
}

// Each optional component (k8s/components) on each overlay, through a throwaway kustomization beside this script
// (kustomize takes only relative paths).
const components = subdirectories(join(root, "k8s/components"));
const scratch = join(here, ".render");
rmSync(scratch, { recursive: true, force: true });
for (const component of components) {
  for (const overlay of overlays) {
    const label = `${overlay}+${component}`;
    const dir = join(scratch, label);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "kustomization.yaml"),
      `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../../overlays/${overlay}\ncomponents:\n  - ../../../components/${component}\n`);
    const rendered = render(label, dir);
    if (rendered === null) continue;
    const objects = await validateRendered(label, rendered, facts);
    if (component === "cluster-tls") {
      for (const n of [SILO, GATEWAY]) {
        const d = objects.find((o) => o.kind === "Deployment" && o.metadata.name === n);
        if (d && !(d.spec.template.spec.containers[0].env ?? []).some((e) => e.name === "Cluster__Tls__CertificatePath")) fail(`${label}/Deployment/${n}`, "the cluster-tls component did not turn TLS on");
      }
    }
  }
}
rmSync(scratch, { recursive: true, force: true });

if (failures.length) {
  console.error(`FAILED: ${failures.length} problem(s)`);
  for (const f of failures) console.error(`  - ${f}`);
  process.exit(1);
}
console.log(`k8s validation passed: ${overlays.length} overlays, ${components.length} optional component(s) on each, schemas and invariants (silo drain ${facts.siloDrain}s, gateway drain ${facts.gatewayDrain}s)`);
