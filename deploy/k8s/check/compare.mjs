// Compares two rendered YAML streams as sets of objects (order of objects and keys ignored).
//   node compare.mjs A.yaml B.yaml
import { readFileSync } from "node:fs";
import { parseYamlStream } from "./render.mjs";

const canon = (v) => Array.isArray(v) ? v.map(canon)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v;
const load = (f) => new Map(parseYamlStream(readFileSync(f, "utf8"), f).map((o) =>
    [`${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`, JSON.stringify(canon(o))]));
const [a, b] = process.argv.slice(2).map(load);
let diff = 0;
for (const k of new Set([...a.keys(), ...b.keys()])) {
    if (a.get(k) !== b.get(k)) {
        diff++;
        console.error(`  differs: ${k}${a.has(k) ? "" : " (only in the second)"}${b.has(k) ? "" : " (only in the first)"}`);
        if (a.has(k) && b.has(k)) console.error(`    ${a.get(k)}\n    ${b.get(k)}`);
    }
}
if (diff) {
    console.error(`${process.argv[2]} and ${process.argv[3]}: ${diff} object(s) differ`);
    process.exit(1);
}
console.log(`${process.argv[2]} and ${process.argv[3]}: the same ${a.size} objects`);
