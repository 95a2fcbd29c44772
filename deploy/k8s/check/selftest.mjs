// Proves that validate.mjs catches the mistakes it is meant to catch: each mutation of the
// rendered default install must be reported.   node selftest.mjs RENDERED.yaml
import { readFileSync } from "node:fs";
import { parseYamlStream } from "./render.mjs";
import { validate } from "./validate.mjs";

const file = process.argv[2];
const fresh = () => parseYamlStream(readFileSync(file, "utf8"), file);
const get = (objs, kind, name) => objs.find((o) => o.kind === kind && (!name || o.metadata.name === name));
const cimapd = (objs) => get(objs, "Deployment", "cimapd").spec.template.spec.containers[0];
const mutations = {
    "unknown field (typo)": (o) => { const c = cimapd(o); c.readinesProbe = c.readinessProbe; delete c.readinessProbe; },
    "wrong type": (o) => { get(o, "Deployment", "cimapd").spec.replicas = "3"; },
    "missing required field": (o) => { delete get(o, "Deployment", "cimapd").spec.selector; },
    "bad enum": (o) => { get(o, "Service", "cimapd").spec.externalTrafficPolicy = "Nearest"; },
    "too few replicas": (o) => { get(o, "Deployment", "cimapd").spec.replicas = 2; },
    "grace shorter than drain": (o) => { get(o, "Deployment", "cimapd").spec.template.spec.terminationGracePeriodSeconds = 30; },
    "liveness on /readyz": (o) => { cimapd(o).livenessProbe.httpGet.path = "/readyz"; },
    "probe on unknown port": (o) => { cimapd(o).readinessProbe.httpGet.port = "metrics"; },
    "dangling ConfigMap": (o) => { cimapd(o).envFrom[0].configMapRef.name = "cimapd-config"; },
    "Service selects nothing": (o) => { get(o, "Service", "cimapd").spec.selector = { app: "imap" }; },
    "HTTP port on the LB": (o) => { get(o, "Service", "cimapd").spec.ports.push({ name: "http", port: 8080, targetPort: "http" }); },
    "HPA on the wrong target": (o) => { get(o, "HorizontalPodAutoscaler").spec.scaleTargetRef.name = "imapd"; },
    "Redis may evict": (o) => {
        const cm = o.find((x) => x.kind === "ConfigMap" && x.data["redis.conf"]);
        cm.data["redis.conf"] = cm.data["redis.conf"].replace("noeviction", "allkeys-lru");
    },
    "Redis without AOF": (o) => {
        const cm = o.find((x) => x.kind === "ConfigMap" && x.data["redis.conf"]);
        cm.data["redis.conf"] = cm.data["redis.conf"].replace("appendonly yes", "appendonly no");
    },
};
let bad = 0;
if (validate(fresh(), true).length) { console.error("selftest: the unmodified render is not valid"); bad++; }
for (const [name, mutate] of Object.entries(mutations)) {
    const objs = fresh();
    mutate(objs);
    const problems = validate(objs, true);
    if (problems.length === 0) { console.error(`selftest: not caught: ${name}`); bad++; }
}
if (bad) process.exit(1);
console.log(`selftest: all ${Object.keys(mutations).length} broken variants rejected`);
