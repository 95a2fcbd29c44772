// A renderer for the subset of kustomize that deploy/k8s uses, so the manifests can be rendered
// and checked where no kubectl/kustomize is installed (Debian bookworm's kubernetes-client embeds
// kustomize v2.0.3, which cannot read directories under `resources:`).
//
//   node render.mjs DIR            prints the rendered objects as a YAML stream
//
// Supported kustomization fields (anything else is an error, so the subset cannot drift
// silently): resources (files and directories), namespace, configMapGenerator (envs, files,
// literals; behavior create/merge/replace), images (name, newName, newTag, digest).
// Generated ConfigMaps get kustomize's content-hash suffix (same algorithm, so the output equals
// `kubectl kustomize`), and references to them from pod specs are renamed.
import { createHash } from "node:crypto";
import { readFileSync, statSync, existsSync } from "node:fs";
import { join, basename } from "node:path";
import { parseAllDocuments, stringify } from "yaml";

const SUPPORTED = new Set(["apiVersion", "kind", "resources", "namespace", "configMapGenerator", "images"]);
const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass",
    "PersistentVolume", "CustomResourceDefinition", "PriorityClass"]);

function fail(msg) {
    throw new Error(msg);
}

export function parseYamlStream(text, origin) {
    const out = [];
    for (const doc of parseAllDocuments(text)) {
        if (doc.errors.length) fail(`${origin}: ${doc.errors[0].message}`);
        const obj = doc.toJS();
        if (obj !== null && obj !== undefined) out.push(obj);
    }
    return out;
}

function kustomizationFile(dir) {
    for (const name of ["kustomization.yaml", "kustomization.yml", "Kustomization"]) {
        const p = join(dir, name);
        if (existsSync(p)) return p;
    }
    fail(`${dir}: no kustomization.yaml`);
}

// Docker-style env file as kustomize reads it: KEY=VALUE lines, # comments and blank lines skipped.
function readEnvFile(path) {
    const data = {};
    readFileSync(path, "utf8").split("\n").forEach((raw, i) => {
        const line = raw.replace(/^\s+/, "");
        if (line === "" || line.startsWith("#")) return;
        const eq = line.indexOf("=");
        if (eq <= 0) fail(`${path}:${i + 1}: not KEY=VALUE: ${raw}`);
        data[line.slice(0, eq)] = line.slice(eq + 1);
    });
    return data;
}

function generatorData(dir, gen) {
    const data = {};
    for (const f of gen.envs ?? []) Object.assign(data, readEnvFile(join(dir, f)));
    for (const f of gen.files ?? []) {
        const [key, file] = f.includes("=") ? f.split("=", 2) : [basename(f), f];
        data[key] = readFileSync(join(dir, file), "utf8");
    }
    for (const l of gen.literals ?? []) {
        const eq = l.indexOf("=");
        if (eq <= 0) fail(`${dir}: literal not KEY=VALUE: ${l}`);
        let v = l.slice(eq + 1);
        if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v.at(-1) === v[0]) v = v.slice(1, -1);
        data[l.slice(0, eq)] = v;
    }
    for (const k of Object.keys(gen)) {
        if (!["name", "envs", "files", "literals", "behavior"].includes(k)) {
            fail(`${dir}: configMapGenerator field ${k} is outside the supported subset`);
        }
    }
    return data;
}

// Go's encoding/json as kustomize's hasher uses it: map keys sorted, <, >, & and U+2028/2029
// escaped.
function goJson(v) {
    if (v === null || typeof v !== "object") {
        return JSON.stringify(v).replace(/[<>&\u2028\u2029]/g,
            (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
    }
    if (Array.isArray(v)) return "[" + v.map(goJson).join(",") + "]";
    return "{" + Object.keys(v).sort().map((k) => goJson(k) + ":" + goJson(v[k])).join(",") + "}";
}

// kustomize's hasher looks the name up with the path "metadata/name" as one field name, finds
// nothing and hashes "" instead: the suffix depends on the data only (checked against kubectl).
export function configMapHash(data) {
    const hex = createHash("sha256").update(goJson({ kind: "ConfigMap", name: "", data })).digest("hex");
    const map = { 0: "g", 1: "h", 3: "k", a: "m", e: "t" };
    return [...hex.slice(0, 10)].map((c) => map[c] ?? c).join("");
}

// Returns { objects, generated } where generated ConfigMaps still carry their base name; the
// hash suffix is applied once, at the top, over the final data.
function build(dir) {
    const kfile = kustomizationFile(dir);
    const [k] = parseYamlStream(readFileSync(kfile, "utf8"), kfile);
    for (const key of Object.keys(k)) {
        if (!SUPPORTED.has(key)) fail(`${kfile}: field ${key} is outside the supported subset`);
    }
    let objects = [];
    for (const r of k.resources ?? []) {
        const p = join(dir, r);
        if (statSync(p).isDirectory()) {
            objects.push(...build(p));
        } else {
            for (const o of parseYamlStream(readFileSync(p, "utf8"), p)) objects.push({ obj: o, gen: false });
        }
    }
    for (const gen of k.configMapGenerator ?? []) {
        const data = generatorData(dir, gen);
        const behavior = gen.behavior ?? "create";
        const existing = objects.find((e) => e.gen && e.obj.metadata.name === gen.name);
        if (behavior === "create") {
            if (existing) fail(`${kfile}: ConfigMap ${gen.name} generated twice`);
            objects.push({
                gen: true,
                obj: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: gen.name }, data },
            });
        } else if (behavior === "merge" || behavior === "replace") {
            if (!existing) fail(`${kfile}: ${behavior} of ConfigMap ${gen.name} that no base generates`);
            existing.obj.data = behavior === "merge" ? { ...existing.obj.data, ...data } : data;
        } else {
            fail(`${kfile}: behavior ${behavior} is outside the supported subset`);
        }
    }
    if (k.namespace) {
        for (const { obj } of objects) {
            if (!CLUSTER_SCOPED.has(obj.kind)) obj.metadata.namespace = k.namespace;
        }
    }
    for (const img of k.images ?? []) {
        for (const { obj } of objects) {
            for (const c of podContainers(obj)) {
                const m = /^([^:@]+)(?::([^@]+))?(?:@(.+))?$/.exec(c.image ?? "");
                if (!m || m[1] !== img.name) continue;
                let image = img.newName ?? m[1];
                if (img.digest) image += "@" + img.digest;
                else if (img.newTag) image += ":" + img.newTag;
                else if (m[2]) image += ":" + m[2];
                c.image = image;
            }
        }
    }
    return objects;
}

export function podSpec(obj) {
    if (obj.kind === "Pod") return obj.spec;
    if (obj.kind === "CronJob") return obj.spec?.jobTemplate?.spec?.template?.spec;
    return obj.spec?.template?.spec;
}

function podContainers(obj) {
    const spec = podSpec(obj);
    if (!spec) return [];
    return [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
}

// kustomize's nameReference for ConfigMaps in pod specs (the places deploy/k8s can use).
function renameConfigMapRefs(obj, names) {
    const spec = podSpec(obj);
    if (!spec) return;
    const fix = (ref) => {
        if (ref && names.has(ref.name)) ref.name = names.get(ref.name);
    };
    for (const c of podContainers(obj)) {
        for (const ef of c.envFrom ?? []) fix(ef.configMapRef);
        for (const e of c.env ?? []) fix(e.valueFrom?.configMapKeyRef);
    }
    for (const v of spec.volumes ?? []) {
        fix(v.configMap);
        for (const s of v.projected?.sources ?? []) fix(s.configMap);
    }
}

export function render(dir) {
    const entries = build(dir);
    const names = new Map();
    for (const e of entries) {
        if (!e.gen) continue;
        const base = e.obj.metadata.name;
        const ns = e.obj.metadata.namespace ?? "";
        if (names.has(base)) fail(`ConfigMap ${base} generated in two namespaces (${ns})`);
        names.set(base, `${base}-${configMapHash(e.obj.data)}`);
        e.obj.metadata.name = names.get(base);
    }
    for (const e of entries) renameConfigMapRefs(e.obj, names);
    return entries.map((e) => e.obj);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
    try {
        const objs = render(process.argv[2] ?? ".");
        process.stdout.write(objs.map((o) => stringify(o, { lineWidth: 0 })).join("---\n"));
    } catch (e) {
        console.error(`render.mjs: ${e.message}`);
        process.exit(1);
    }
}
