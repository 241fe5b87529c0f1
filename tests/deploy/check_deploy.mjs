// Offline checks of deploy/, for CI machines without a cluster or a container engine:
//  - `kubectl kustomize` renders deploy/k8s, its GPU overlay and the KServe example;
//  - every rendered object of a built-in kind validates against the Kubernetes API schemas
//    (kubernetes-models: the upstream OpenAPI schemas compiled with ajv; types, enums and
//    required fields; unknown fields are not flagged, as kubeconform -strict would);
//  - what the deployment relies on is there: probes on the KServe health endpoints, resources on
//    every container, a RAM-backed /dev/shm with a size limit, Prometheus annotations, non-root
//    pods, the store's socket directory shared through a hostPath, the GPU overlay's
//    nvidia.com/gpu, the router's template from deploy/nginx;
//  - deploy/Containerfile parses without problems (dockerfile-utils) and is multi-stage, runs
//    as a non-root user, checks /v2/health/ready and starts `zerodet serve`.
// Usage: node tests/deploy/check_deploy.mjs REPO_ROOT. Exits 77 (skipped) without kubectl or
// the npm packages (scripts/setup.sh installs both), 1 on a failed check.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const root = process.argv[2] || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
let YAML, dockerfileUtils;
try {
  YAML = await import("yaml");
  dockerfileUtils = await import("dockerfile-utils");
  await import("kubernetes-models");
} catch (e) {
  console.log("SKIP: npm packages missing (scripts/setup.sh runs npm ci in tests/deploy)");
  process.exit(77);
}
const kubectl = [process.env.KUBECTL, "/usr/bin/kubectl", "/usr/local/bin/kubectl"]
  .filter(Boolean).find(fs.existsSync);
if (!kubectl) {
  console.log("SKIP: kubectl is not installed (Debian: kubernetes-client)");
  process.exit(77);
}

let failures = 0;
function check(condition, what) {
  if (!condition) {
    console.log(`FAIL: ${what}`);
    failures++;
  }
}

// apiVersion "apps/v1" + kind -> kubernetes-models/apps/v1/<Kind>; "v1" -> kubernetes-models/v1.
async function validate(object, where) {
  const [group, version] = object.apiVersion.includes("/")
    ? object.apiVersion.split("/") : [null, object.apiVersion];
  const module = `kubernetes-models/${group ? group + "/" : ""}${version}/${object.kind}`;
  let Model;
  try {
    Model = (await import(module))[object.kind];
  } catch (e) {
    return false;  // not a built-in kind (a CRD)
  }
  try {
    new Model(object).validate();
  } catch (e) {
    check(false, `${where}: ${object.kind}/${object.metadata?.name}: ${e.message}`);
  }
  return true;
}

function render(dir) {
  const text = execFileSync(kubectl, ["kustomize", path.join(root, dir)],
                            { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return YAML.parseAllDocuments(text).map((d) => d.toJSON()).filter(Boolean);
}

function podSpec(object) {
  return object.spec?.template?.spec ?? object.spec?.jobTemplate?.spec?.template?.spec;
}

const rendered = {};
for (const dir of ["deploy/k8s", "deploy/k8s/overlays/gpu", "deploy/k8s/kserve"]) {
  try {
    rendered[dir] = render(dir);
  } catch (e) {
    check(false, `kubectl kustomize ${dir}: ${e.stderr || e.message}`);
    rendered[dir] = [];
  }
  let builtIn = 0;
  for (const object of rendered[dir]) {
    if (await validate(object, dir)) builtIn++;
  }
  console.log(`${dir}: ${rendered[dir].length} objects, ${builtIn} validated against the API schemas`);
}

const objects = rendered["deploy/k8s"];
const find = (kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const serve = find("StatefulSet", "zerodet-serve");
const store = find("DaemonSet", "zerodet-store");
const router = find("Deployment", "zerodet-router");
check(serve && store && router, "serve StatefulSet, store DaemonSet and router Deployment exist");
check(objects.some((o) => o.kind === "Job"), "a preload Job exists");
check(objects.some((o) => o.kind === "HorizontalPodAutoscaler" &&
                          o.spec.scaleTargetRef.name === "zerodet-serve"), "an HPA scales serve");
const headless = find("Service", "zerodet-serve");
check(headless?.spec.clusterIP === "None" && headless.spec.publishNotReadyAddresses,
      "the serve Service is headless and publishes not-ready addresses");
for (const object of objects) {
  const spec = podSpec(object);
  if (!spec) continue;
  const name = `${object.kind}/${object.metadata.name}`;
  for (const container of spec.containers) {
    check(container.resources?.requests && container.resources?.limits,
          `${name}: container ${container.name} has requests and limits`);
  }
  if (object.metadata.name !== "zerodet-router") {
    check(spec.securityContext?.runAsNonRoot === true, `${name}: runs as non-root`);
  }
}
if (serve) {
  const spec = podSpec(serve);
  const container = spec.containers[0];
  check(container.readinessProbe?.httpGet?.path === "/v2/health/ready", "serve readiness probe");
  check(container.livenessProbe?.httpGet?.path === "/v2/health/live", "serve liveness probe");
  const shm = spec.volumes.find((v) => v.emptyDir?.medium === "Memory");
  check(shm?.emptyDir.sizeLimit && container.volumeMounts.some(
          (m) => m.name === shm.name && m.mountPath === "/dev/shm"),
        "serve mounts a size-limited RAM emptyDir at /dev/shm");
  check(serve.spec.template.metadata.annotations?.["prometheus.io/scrape"] === "true",
        "serve pods carry Prometheus scrape annotations");
  check(spec.volumes.some((v) => v.persistentVolumeClaim?.claimName === "zerodet-models"),
        "serve reads the repository from the models PVC");
  const gpu = rendered["deploy/k8s/overlays/gpu"].find((o) => o.kind === "StatefulSet");
  check(podSpec(gpu ?? {})?.containers[0].resources.limits["nvidia.com/gpu"] === 1,
        "the GPU overlay asks for nvidia.com/gpu");
}
if (store) {
  const spec = podSpec(store);
  check(spec.volumes.some((v) => v.hostPath?.path === "/run/zerodet"),
        "the store's socket directory is a hostPath");
  check(!spec.hostIPC, "the store needs no hostIPC");
}
const template = fs.readFileSync(path.join(root, "deploy/nginx/zerodet.conf.template"), "utf8");
const routerTemplate = objects.find((o) => o.kind === "ConfigMap" &&
                                           o.metadata.name.startsWith("zerodet-router-template"));
check(routerTemplate?.data["zerodet.conf.template"] === template,
      "the router's ConfigMap holds deploy/nginx/zerodet.conf.template as it is");
const kserve = rendered["deploy/k8s/kserve"];
check(kserve.some((o) => o.kind === "ServingRuntime" &&
                         o.spec.protocolVersions.includes("v2")), "a KServe v2 ServingRuntime");
check(kserve.some((o) => o.kind === "InferenceService" &&
                         o.spec.predictor.model.runtime === "zerodet"),
      "an InferenceService on that runtime");

// The Containerfile.
const containerfile = fs.readFileSync(path.join(root, "deploy/Containerfile"), "utf8");
const problems = dockerfileUtils.validate(containerfile);
for (const p of problems) {
  check(false, `deploy/Containerfile:${p.range.start.line + 1}: ${p.message}`);
}
const lines = containerfile.split("\n").filter((l) => !l.startsWith("#"));
const instructions = lines.join("\n").replace(/\\\n/g, " ").split("\n")
  .map((l) => l.trim()).filter(Boolean);
const froms = instructions.filter((l) => /^FROM\s/i.test(l));
check(froms.length >= 2, "the Containerfile is multi-stage");
const finalStage = instructions.slice(instructions.lastIndexOf(froms[froms.length - 1]));
const user = finalStage.filter((l) => /^USER\s/i.test(l)).pop();
check(user && !/^USER\s+(root|0)(\s|:|$)/i.test(user), "the runtime stage runs as a non-root USER");
check(finalStage.some((l) => /^HEALTHCHECK\s.*\/v2\/health\/ready/i.test(l)),
      "the runtime stage checks /v2/health/ready");
check(finalStage.some((l) => /^ENTRYPOINT\s+\["zerodet"\]/.test(l)) &&
      finalStage.some((l) => /^CMD\s+\["serve"/.test(l)), "the image starts zerodet serve");
check(finalStage.some((l) => /^COPY\s+--from=build\b/.test(l)),
      "the runtime stage copies only the build's products");

console.log(failures ? `${failures} check(s) failed` : "deploy checks passed");
process.exit(failures ? 1 : 0);
