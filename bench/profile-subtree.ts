/**
 * Where the time under one function goes, in a V8 CPU profile (.cpuprofile, from `node
 * --cpu-prof`): the total sampled under every call of `fn`, then each function below it by the
 * time spent in it or under it (a function counted once per stack, so recursion does not count
 * twice). Complements bench/profile-summary.ts, which ranks by self time over the whole process.
 *
 *   node --import tsx bench/profile-subtree.ts <file.cpuprofile> <fn> [--top 40]
 *
 * e.g. `execute` (a worker's attempt: the call and its outcome) or `handleRest` (a REST request).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  options: { top: { type: "string", default: "40" } },
  allowPositionals: true,
});
const [file, root] = positionals;
if (!file || !root) {
  process.stderr.write("usage: profile-subtree.ts <file.cpuprofile> <function name> [--top N]\n");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfMs = new Map<number, number>();
profile.samples.forEach((id, i) => {
  selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
});
const label = (n: ProfileNode) =>
  `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(/.*\/(node_modules|src)\//, "$1/")}`;

const totals = new Map<string, number>();
let rootMs = 0;
for (const [id, ms] of selfMs) {
  const stack: ProfileNode[] = [];
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    stack.push(byId.get(cur)!);
  }
  const at = stack.findIndex((n) => n.callFrame.functionName === root);
  if (at < 0) continue;
  rootMs += ms;
  const seen = new Set<string>();
  for (const n of stack.slice(0, at)) {
    const key = label(n);
    if (seen.has(key)) continue;
    seen.add(key);
    totals.set(key, (totals.get(key) ?? 0) + ms);
  }
}
const lines = [`${root}: ${rootMs.toFixed(0)} ms sampled under it`];
for (const [key, ms] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
  lines.push(
    `${ms.toFixed(0).padStart(7)} ms ${((100 * ms) / (rootMs || 1)).toFixed(1).padStart(5)}%  ${key}`,
  );
}
process.stdout.write(`${lines.join("\n")}\n`);
