// Offline validation of the Kubernetes deployment: renders every overlay with `kubectl kustomize`, validates
// every object against the Kubernetes OpenAPI schemas (kubernetes-models), then checks the invariants the
// operations guide relies on. Exits non-zero with every failure listed. Run through k8s/validate/run.sh.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const failures = [];
const fail = (where, message) => failures.push(`${where}: ${message}`);

const SECRET_NAME = /secret|password|passwd|token|apikey|api_key|key$|keysha256|credential/i;
const SILO = "kvcache-silo";
const GATEWAY = "kvcache-gateway";
const SILO_GRPC_PORT = 50061;

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

function drainTimeoutSeconds() {
  const program = readFileSync(join(root, "src/SiloHost/Program.cs"), "utf8");
  const m = program.match(/ShutdownTimeout\s*=\s*TimeSpan\.FromSeconds\((\d+)\)/);
  if (!m) {
    fail("src/SiloHost/Program.cs", "cannot find the host's ShutdownTimeout (the drain timeout)");
    return 0;
  }
  return Number(m[1]);
}

function checkImage(where, image) {
  const tag = image.includes("@") ? "digest" : image.split("/").pop().split(":")[1];
  if (!tag) fail(where, `image ${image} has no tag`);
  else if (tag === "latest") fail(where, `image ${image} uses latest`);
}

function checkPodSpec(where, spec) {
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const at = `${where} container ${c.name}`;
    checkImage(at, c.image);
    for (const e of c.env ?? []) {
      if (SECRET_NAME.test(e.name) && e.value !== undefined) fail(at, `env ${e.name} has a plaintext value; use secretKeyRef`);
    }
  }
  for (const c of spec.containers) {
    if (!c.readinessProbe) fail(`${where} container ${c.name}`, "no readinessProbe");
    if (!c.livenessProbe) fail(`${where} container ${c.name}`, "no livenessProbe");
  }
}

const matches = (selector, labels) =>
  Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);

function checkOverlay(name, objects, drainTimeout) {
  const where = (o) => `${name}/${o.kind}/${o.metadata.name}`;
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const find = (kind, n) => objects.find((o) => o.kind === kind && o.metadata.name === n);

  for (const o of objects) {
    if (o.kind === "Secret") fail(where(o), "a Secret is rendered; create secrets out of band");
    if (o.kind === "ConfigMap") {
      for (const [k, v] of Object.entries(o.data ?? {})) {
        if (SECRET_NAME.test(k.replace(/__/g, "")) && v !== "") fail(where(o), `key ${k} looks like a secret`);
      }
    }
    const pod = o.spec?.template?.spec;
    if (pod) checkPodSpec(where(o), pod);
  }

  for (const kind of ["Deployment"]) {
    for (const d of byKind(kind)) {
      const ru = d.spec.strategy?.rollingUpdate;
      if (d.spec.strategy?.type !== "RollingUpdate" || ru?.maxUnavailable !== 0) fail(where(d), "rolling update must have maxUnavailable: 0");
    }
  }

  const silo = find("Deployment", SILO);
  if (!silo) {
    fail(name, "no silo Deployment");
  } else {
    const pod = silo.spec.template.spec;
    const c = pod.containers[0];
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
    const preStop = c.lifecycle?.preStop;
    if (!preStop) fail(where(silo), "no preStop hook");
    const preStopSeconds = preStop?.sleep?.seconds ?? 0;
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    if (!(grace > drainTimeout + preStopSeconds)) fail(where(silo), `terminationGracePeriodSeconds ${grace} must exceed preStop ${preStopSeconds}s + drain ${drainTimeout}s`);
    if (env.POD_IP?.valueFrom?.fieldRef?.fieldPath !== "status.podIP") fail(where(silo), "POD_IP must come from the downward API (status.podIP)");
    if (env.POD_NAME?.valueFrom?.fieldRef?.fieldPath !== "metadata.name") fail(where(silo), "POD_NAME must come from the downward API (metadata.name)");
    if (env.Cluster__AdvertisedEndpoint?.value !== `$(POD_IP):${SILO_GRPC_PORT}`) fail(where(silo), "Cluster__AdvertisedEndpoint must be $(POD_IP):<grpc port>");
    if (env.Silo__SiloName?.value !== "$(POD_NAME)") fail(where(silo), "Silo__SiloName must be $(POD_NAME)");
    if (!env.Cluster__Secret?.valueFrom?.secretKeyRef) fail(where(silo), "Cluster__Secret must come from a Secret");
    if (c.readinessProbe?.httpGet?.path !== "/healthz/ready") fail(where(silo), "readiness must be /healthz/ready");
    if (c.livenessProbe?.httpGet?.path !== "/healthz/live") fail(where(silo), "liveness must be the local /healthz/live");

    const gpu = c.resources?.limits?.["nvidia.com/gpu"];
    if (name === "gpu") {
      if (!(Number(gpu) >= 1)) fail(where(silo), "silos need an nvidia.com/gpu limit in the gpu overlay");
      if (!pod.nodeSelector || Object.keys(pod.nodeSelector).length === 0) fail(where(silo), "silos need a GPU nodeSelector");
      if (!(pod.tolerations ?? []).some((t) => t.key === "nvidia.com/gpu")) fail(where(silo), "silos need a toleration for nvidia.com/gpu");
    } else if (gpu !== undefined) {
      fail(where(silo), `overlay ${name} is CPU-only but requests nvidia.com/gpu`);
    }

    const labels = silo.spec.template.metadata.labels;
    if (!byKind("PodDisruptionBudget").some((p) => matches(p.spec.selector, labels))) fail(where(silo), "no PodDisruptionBudget selects the silos");

    const policy = byKind("NetworkPolicy").find((p) => matches(p.spec.podSelector, labels));
    if (!policy) {
      fail(where(silo), "no NetworkPolicy selects the silos");
    } else {
      for (const rule of policy.spec.ingress ?? []) {
        const opensGrpc = !rule.ports || rule.ports.some((p) => p.port === SILO_GRPC_PORT || p.port === "grpc");
        const peers = rule.from ?? [];
        const onlyOurs = peers.length > 0 && peers.every((p) => !p.namespaceSelector && !p.ipBlock
          && [SILO, GATEWAY].includes(p.podSelector?.matchLabels?.["app.kubernetes.io/name"]));
        if (opensGrpc && !onlyOurs) fail(where(policy), "the silos' internal port must admit only gateways and silos");
      }
    }
  }

  const gateway = find("Deployment", GATEWAY);
  if (!gateway) fail(name, "no gateway Deployment");
  if (!byKind("Service").some((s) => s.metadata.name === GATEWAY)) fail(name, "no gateway Service");
  if (!byKind("HorizontalPodAutoscaler").some((h) => h.spec.scaleTargetRef.name === GATEWAY)) fail(name, "no HorizontalPodAutoscaler for the gateways");

  const redis = find("StatefulSet", "kvcache-redis");
  if (redis) {
    if (!(redis.spec.volumeClaimTemplates ?? []).length) fail(where(redis), "Redis needs a persistent volume");
    const pw = (redis.spec.template.spec.containers[0].env ?? []).find((e) => e.name === "REDIS_PASSWORD");
    if (!pw?.valueFrom?.secretKeyRef) fail(where(redis), "the Redis password must come from a Secret");
  }
}

function checkDockerfiles() {
  for (const file of ["src/Gateway/Dockerfile", "src/SiloHost/Dockerfile"]) {
    const text = readFileSync(join(root, file), "utf8");
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
      }
    }
    if ((lines.filter((l) => /^RUN dotnet publish .* -o \/app$/.test(l))).length !== 1) fail(file, "expected exactly one `RUN dotnet publish … -o /app` (the tests run the same command)");
  }
}

await selfCheck();
checkDockerfiles();
const drainTimeout = drainTimeoutSeconds();
const overlays = readdirSync(join(root, "k8s/overlays"), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
if (overlays.length === 0) fail("k8s/overlays", "no overlays");
for (const overlay of overlays) {
  let rendered;
  try {
    rendered = execFileSync("kubectl", ["kustomize", join(root, "k8s/overlays", overlay)], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    fail(`overlay ${overlay}`, `kubectl kustomize failed: ${e.stderr || e.message}`);
    continue;
  }
  const docs = parseAllDocuments(rendered);
  const objects = [];
  for (const doc of docs) {
    if (doc.errors.length) fail(`overlay ${overlay}`, `YAML: ${doc.errors[0].message}`);
    const obj = doc.toJS();
    if (obj) objects.push(obj);
  }
  for (const obj of objects) await schemaValidate(`${overlay}/${obj.kind}/${obj.metadata?.name}`, obj);
  checkOverlay(overlay, objects, drainTimeout);
  console.log(`overlay ${overlay}: ${objects.length} objects rendered (${[...new Set(objects.map((o) => o.kind))].sort().join(", ")})`);
}

if (failures.length) {
  console.error(`FAILED: ${failures.length} problem(s)`);
  for (const f of failures) console.error(`  - ${f}`);
  process.exit(1);
}
console.log(`k8s validation passed: ${overlays.length} overlays, schemas and invariants (drain timeout ${drainTimeout}s)`);
