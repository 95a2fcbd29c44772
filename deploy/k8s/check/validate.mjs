// Offline structural validation of rendered deploy/k8s manifests.
//
//   node validate.mjs RENDERED.yaml [--full]     (--full: the default install with Redis inside)
//
// 1. Schema: every object against the Kubernetes OpenAPI schema through the validators of the
//    npm package kubernetes-models (types, required fields, enums, formats).
// 2. Unknown fields: kubernetes-models' validators accept fields the API does not have (a typo
//    such as `readinesProbe` would pass and be dropped by the API server), so every field is also
//    looked up in the package's type declarations (.d.ts), recursively.
// 3. cimap's own rules: what DESIGN.md and issue 10 ask of the deployment, and references
//    between the objects (selectors, ConfigMaps, Secrets, named ports, the HPA target).
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { parseYamlStream, podSpec } from "./render.mjs";

const require = createRequire(import.meta.url);
const pkgRoot = dirname(require.resolve("kubernetes-models/package.json"));
const id = (o) => `${o.kind}/${o.metadata?.name}`;

// Returns the list of problems of the rendered objects (empty: valid). full: the default
// install, with the in-cluster Redis.
export function validate(objects, full) {
const problems = [];
const problem = (where, msg) => problems.push(`${where}: ${msg}`);

// ---- 1. kubernetes-models schema validation
function modelPath(o) {
    const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : [null, o.apiVersion];
    return group ? `kubernetes-models/${group}/${version}/${o.kind}` : `kubernetes-models/${version}/${o.kind}`;
}
for (const o of objects) {
    let Model;
    try {
        Model = require(modelPath(o))[o.kind];
    } catch {
        problem(id(o), `no model for ${o.apiVersion} ${o.kind}`);
        continue;
    }
    try {
        new Model(o).validate();
    } catch (e) {
        problem(id(o), `schema: ${e.message}`);
    }
}

// ---- 2. unknown fields, from the packages' type declarations
const interfaces = new Map(); // .d.ts path -> { props: Map(name -> {type, file}) } | null
function dtsPath(spec, fromFile) {
    if (spec.startsWith(".")) return resolve(dirname(fromFile), spec.replace(/\.js$/, "")) + ".d.ts";
    return require.resolve(spec.replace(/\.js$/, "") + ".js", { paths: [pkgRoot] }).replace(/\.js$/, ".d.ts");
}
function loadInterface(path) {
    if (interfaces.has(path)) return interfaces.get(path);
    let result = null;
    if (existsSync(path)) {
        const text = readFileSync(path, "utf8");
        const imports = new Map();
        for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) imports.set(m[1], m[2]);
        const body = /^export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/m.exec(text);
        if (body) {
            const props = new Map();
            for (const m of body[1].matchAll(/^ {4}"([^"]+)"\??: (.+)$/gm)) {
                const t = /^(?:Array<)?(IIoK8s\w+)>?;$/.exec(m[2]);
                props.set(m[1], t && imports.has(t[1]) ? dtsPath(imports.get(t[1]), path) : null);
            }
            result = props;
        }
    }
    interfaces.set(path, result);
    return result;
}
function checkFields(value, dts, where) {
    const props = dts && loadInterface(dts);
    if (!props || value === null || typeof value !== "object") return;
    for (const item of Array.isArray(value) ? value : [value]) {
        if (item === null || typeof item !== "object") continue;
        for (const [k, v] of Object.entries(item)) {
            if (!props.has(k)) {
                problem(where, `unknown field "${k}" (known: ${[...props.keys()].join(", ")})`);
            } else {
                checkFields(v, props.get(k), `${where}.${k}`);
            }
        }
    }
}
for (const o of objects) {
    try {
        checkFields(o, require.resolve(modelPath(o)).replace(/\.js$/, ".d.ts"), id(o));
    } catch {
        // reported above
    }
}

// ---- 3. cimap's rules and cross-references
const find = (kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const byKind = (kind) => objects.filter((o) => o.kind === kind);
const matches = (selector, labels) =>
    Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v) && Object.keys(selector ?? {}).length > 0;
const need = (cond, where, msg) => cond || problem(where, msg);

const namespaces = new Set(objects.filter((o) => o.kind !== "Namespace").map((o) => o.metadata.namespace));
need(namespaces.size === 1 && !namespaces.has(undefined), "all", `one namespace for every object, got ${[...namespaces]}`);

for (const o of objects) {
    const spec = podSpec(o);
    if (!spec || !o.spec?.selector) continue;
    need(matches(o.spec.selector.matchLabels, o.spec.template.metadata.labels), id(o), "selector does not match the pod labels");
    for (const c of spec.containers) {
        const portNames = new Set((c.ports ?? []).map((p) => p.name));
        for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"]) {
            const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port;
            if (typeof port === "string") need(portNames.has(port), id(o), `${probe} names port ${port} the container lacks`);
        }
        for (const ef of c.envFrom ?? []) {
            if (ef.configMapRef) need(find("ConfigMap", ef.configMapRef.name), id(o), `envFrom ConfigMap ${ef.configMapRef.name} not rendered`);
        }
    }
    for (const v of spec.volumes ?? []) {
        if (v.configMap) need(find("ConfigMap", v.configMap.name), id(o), `volume ConfigMap ${v.configMap.name} not rendered`);
        if (v.secret) need(find("Secret", v.secret.secretName), id(o), `volume Secret ${v.secret.secretName} not rendered`);
    }
    for (const c of spec.containers) {
        for (const m of c.volumeMounts ?? []) {
            const ok = (spec.volumes ?? []).some((v) => v.name === m.name) ||
                (o.spec.volumeClaimTemplates ?? []).some((t) => t.metadata.name === m.name);
            need(ok, id(o), `volumeMount ${m.name} has no volume`);
        }
    }
}

for (const s of byKind("Service")) {
    const targets = objects.filter((o) => podSpec(o) && matches(s.spec.selector, o.spec.template.metadata.labels));
    need(targets.length === 1, id(s), `selector matches ${targets.length} workloads`);
    for (const p of s.spec.ports) {
        if (typeof p.targetPort !== "string" || !targets[0]) continue;
        const names = podSpec(targets[0]).containers.flatMap((c) => (c.ports ?? []).map((x) => x.name));
        need(names.includes(p.targetPort), id(s), `targetPort ${p.targetPort} is no container port`);
    }
}

const d = find("Deployment", "cimapd");
if (need(d, "cimapd", "no Deployment cimapd")) {
    const spec = d.spec.template.spec;
    const c = spec.containers.find((x) => x.name === "cimapd");
    need(d.spec.replicas >= 3, id(d), "fewer than 3 replicas");
    need(c.readinessProbe?.httpGet?.path === "/readyz" && c.readinessProbe.httpGet.port === "http", id(d), "readiness must be GET /readyz on the http port");
    need(c.livenessProbe?.httpGet?.path === "/healthz" && c.livenessProbe.httpGet.port === "http", id(d), "liveness must be GET /healthz on the http port");
    need(spec.affinity?.podAntiAffinity, id(d), "no pod anti-affinity");
    need(c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory, id(d), "resources incomplete");
    need(spec.securityContext?.runAsNonRoot === true && c.securityContext?.allowPrivilegeEscalation === false, id(d), "must run as non-root without privilege escalation");
    const cmName = c.envFrom?.[0]?.configMapRef?.name;
    const env = find("ConfigMap", cmName)?.data ?? {};
    for (const key of ["CIMAP_REDIS", "CIMAP_HTTP", "CIMAP_LISTEN", "CIMAP_DRAIN_GRACE"]) {
        need(env[key], id(d), `ConfigMap ${cmName} lacks ${key}`);
    }
    const httpPort = Number(String(env.CIMAP_HTTP ?? "").split(":").at(-1));
    need(c.ports.some((p) => p.name === "http" && p.containerPort === httpPort), id(d), `container port http is not CIMAP_HTTP's port ${httpPort}`);
    for (const [name, key] of [["imap", "CIMAP_LISTEN"], ["imaps", "CIMAP_LISTEN_TLS"]]) {
        const port = c.ports.find((p) => p.name === name)?.containerPort;
        if (env[key]) need(String(env[key]).split(",").some((a) => Number(a.split(":").at(-1)) === port), id(d), `container port ${name} (${port}) is not in ${key}`);
    }
    const preStop = Number(c.lifecycle?.preStop?.exec?.command?.[1] ?? c.lifecycle?.preStop?.sleep?.seconds ?? 0);
    const grace = Number(env.CIMAP_DRAIN_GRACE);
    need(spec.terminationGracePeriodSeconds >= preStop + grace + 5, id(d),
        `terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} < preStop ${preStop} + drain grace ${grace} + 5`);
    need(spec.terminationGracePeriodSeconds <= preStop + grace + 30, id(d), "terminationGracePeriodSeconds far above the drain grace");
    if (env.CIMAP_TLS_CERT) {
        const mounts = c.volumeMounts ?? [];
        need(mounts.some((m) => env.CIMAP_TLS_CERT.startsWith(m.mountPath + "/")), id(d), "CIMAP_TLS_CERT is not under a mounted volume");
    }
    if (!/^redis:\/\/cimap-redis:6379/.test(env.CIMAP_REDIS ?? "")) {
        need(!full, id(d), "the default install must use the in-cluster Redis");
    } else {
        need(find("Service", "cimap-redis"), id(d), "CIMAP_REDIS names Service cimap-redis, which is not rendered");
    }

    const svc = objects.find((o) => o.kind === "Service" && o.spec.type === "LoadBalancer");
    if (need(svc, "Service", "no LoadBalancer Service")) {
        const ports = svc.spec.ports.map((p) => p.port).sort();
        need(JSON.stringify(ports) === "[143,993]", id(svc), `LoadBalancer ports ${ports}, want 143 and 993 (never the HTTP port)`);
        need(svc.spec.externalTrafficPolicy, id(svc), "externalTrafficPolicy not set");
        need(matches(svc.spec.selector, d.spec.template.metadata.labels), id(svc), "does not select cimapd");
    }
    const pdb = byKind("PodDisruptionBudget")[0];
    if (need(pdb, "PodDisruptionBudget", "missing")) {
        need(matches(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels), id(pdb), "does not select cimapd");
        need(pdb.spec.maxUnavailable !== undefined ? pdb.spec.maxUnavailable < d.spec.replicas : pdb.spec.minAvailable < d.spec.replicas, id(pdb), "blocks every disruption");
    }
    const hpa = byKind("HorizontalPodAutoscaler")[0];
    if (need(hpa, "HorizontalPodAutoscaler", "missing")) {
        const t = hpa.spec.scaleTargetRef;
        need(t.kind === "Deployment" && t.name === "cimapd" && t.apiVersion === "apps/v1", id(hpa), "does not target Deployment cimapd");
        need(hpa.spec.minReplicas >= 3 && hpa.spec.maxReplicas >= hpa.spec.minReplicas, id(hpa), "replica range");
        need(hpa.spec.behavior?.scaleDown?.stabilizationWindowSeconds >= 300, id(hpa), "scale-down must be slow (each removal drains clients)");
    }
    const secret = find("Secret", "cimap-tls");
    if (secret) need(secret.type === "kubernetes.io/tls" && "tls.crt" in (secret.data ?? {}) && "tls.key" in (secret.data ?? {}), id(secret), "not a kubernetes.io/tls Secret");
}

if (full) {
    const r = find("StatefulSet", "cimap-redis");
    if (need(r, "redis", "no StatefulSet cimap-redis")) {
        const spec = r.spec.template.spec;
        need(r.spec.volumeClaimTemplates?.length === 1, id(r), "no persistent volume claim");
        const cm = find("ConfigMap", spec.volumes.find((v) => v.configMap)?.configMap.name);
        const conf = cm?.data?.["redis.conf"] ?? "";
        const directive = (k) => (conf.match(new RegExp(`^${k}\\s+(\\S+)\\s*$`, "m")) ?? [])[1];
        need(directive("appendonly") === "yes", id(r), "redis.conf: appendonly yes");
        need(["everysec", "always"].includes(directive("appendfsync")), id(r), "redis.conf: appendfsync everysec|always");
        need(directive("maxmemory-policy") === "noeviction", id(r), "redis.conf: maxmemory-policy noeviction");
        need(directive("dir") && spec.containers[0].volumeMounts.some((m) => m.name === "data" && m.mountPath === directive("dir")), id(r), "redis.conf dir is not the persistent volume");
        const svc = find("Service", r.spec.serviceName);
        need(svc?.spec.clusterIP === "None", id(r), `serviceName ${r.spec.serviceName} is not a headless Service`);
    }
} else {
    need(!find("StatefulSet", "cimap-redis"), "overlay", "external Redis overlay still renders the Redis StatefulSet");
}

return problems;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
const [file, ...flags] = process.argv.slice(2);
const objects = parseYamlStream(readFileSync(file, "utf8"), file);
const problems = validate(objects, flags.includes("--full"));
const kinds = objects.map((o) => o.kind).sort().join(" ");
if (problems.length) {
    console.error(problems.map((p) => `  ${p}`).join("\n"));
    console.error(`${file}: ${problems.length} problem(s) in ${objects.length} objects`);
    process.exit(1);
}
console.log(`${file}: ${objects.length} objects valid (${kinds})`);
}
