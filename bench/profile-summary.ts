/**
 * Summarises a V8 CPU profile (.cpuprofile, from `node --cpu-prof`): where the process spent its
 * time by category (SQLite, protobuf, Connect, HTTP/2, undici, logging, our code by folder, GC,
 * idle) and the top functions by self time and by total time.
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile> [--top 30] [--exclude fn]...
 *
 * `--exclude jobClaim` leaves out the samples under a function (to see what the rest costs).
 *
 * Native frames (no script URL: better-sqlite3's C++ methods, JSON builtins, Buffer copies) are
 * charged to the category of the nearest JavaScript caller, except JSON.parse/stringify, which get
 * their own line. A server profile comes from running the benchmark with
 * `--server-cpu-prof <dir>` (e.g. `npm run bench -- --only jq-batch --rounds 1 --server-cpu-prof /tmp/prof`).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: "string", default: "30" },
    exclude: { type: "string", multiple: true, default: [] },
  },
});
if (positionals.length === 0) {
  process.stderr.write(
    "usage: node --import tsx bench/profile-summary.ts <file.cpuprofile> [--top 30]\n",
  );
  process.exit(2);
}
const top = Number(values.top);
/** Function names whose samples (with everything they call) are left out, e.g. `--exclude jobClaim`. */
const exclude = new Set(values.exclude);

function categoryOfUrl(url: string): string | null {
  if (url === "") return null;
  const nm = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nm) {
    const pkg = nm[1]!;
    if (pkg === "better-sqlite3") return "SQLite (better-sqlite3)";
    if (pkg === "@bufbuild/protobuf") return "protobuf (@bufbuild/protobuf)";
    if (pkg.startsWith("@connectrpc/")) return "Connect (@connectrpc)";
    if (pkg === "undici") return "undici";
    if (pkg === "pino" || pkg === "sonic-boom" || pkg.startsWith("pino-")) return "logging (pino)";
    return `node_modules: ${pkg}`;
  }
  const src = /\/(src|gen|bench)\/(?:([^/]+)\/)?/.exec(url);
  if (src) {
    if (src[1] === "gen") return "generated code (gen/)";
    if (src[1] === "bench") return "bench";
    return `our code: src/${src[2] && !src[2].endsWith(".ts") ? src[2] : ""}`;
  }
  if (/^node:internal\/http2|^node:http2/.test(url)) return "HTTP/2 (node:http2)";
  if (/^node:_http|^node:http$/.test(url)) return "HTTP/1 (node:http)";
  if (/^node:internal\/streams|^node:stream/.test(url)) return "streams (node)";
  if (/^node:net|^node:internal\/net|stream_base_commons|^node:internal\/dns/.test(url)) {
    return "net / sockets (node)";
  }
  if (/^node:internal\/process\/task_queues|^node:internal\/timers|^node:timers/.test(url)) {
    return "timers / microtasks (node)";
  }
  if (/^node:internal\/(modules|bootstrap|deps\/cjs-module-lexer)|^node:internal\/vm/.test(url)) {
    return "module loading (start-up)";
  }
  if (/abort_controller|event_target|domexception/.test(url)) {
    return "AbortSignal / EventTarget / DOMException (node)";
  }
  if (/^node:events$/.test(url)) return "EventEmitter (node)";
  if (/^node:internal\/(async_hooks|async_local_storage)/.test(url)) return "async_hooks (node)";
  if (url.startsWith("node:")) return "node internals (other)";
  return `other: ${url.split("/").slice(-2).join("/")}`;
}

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const self = new Map<number, number>();
  const excludedCache = new Map<number, boolean>();
  const excluded = (id: number): boolean => {
    const cached = excludedCache.get(id);
    if (cached !== undefined) return cached;
    const p = parent.get(id);
    const result =
      exclude.has(byId.get(id)!.callFrame.functionName) || (p !== undefined && excluded(p));
    excludedCache.set(id, result);
    return result;
  };
  let excludedUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    if (exclude.size > 0 && excluded(id)) {
      excludedUs += profile.timeDeltas[i] ?? 0;
      continue;
    }
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }

  const categoryCache = new Map<number, string>();
  const categoryOf = (id: number): string => {
    const cached = categoryCache.get(id);
    if (cached) return cached;
    const node = byId.get(id)!;
    const { functionName, url } = node.callFrame;
    let cat: string;
    if (functionName === "(idle)") cat = "(idle)";
    else if (functionName === "(garbage collector)") cat = "GC";
    else if (functionName === "(program)") cat = "(program: V8/native, no JS frame)";
    else if (functionName === "(root)") cat = "(root)";
    else if (url === "" && (functionName === "parse" || functionName === "stringify")) {
      cat = "JSON.parse / JSON.stringify";
    } else {
      const direct = categoryOfUrl(url);
      if (direct) cat = direct;
      else {
        const p = parent.get(id);
        cat = p === undefined ? "native (no caller)" : categoryOf(p);
        // A native method called from the store is SQLite work (better-sqlite3's C++ side).
        if (cat === "our code: src/store") cat = "SQLite (better-sqlite3)";
      }
    }
    categoryCache.set(id, cat);
    return cat;
  };

  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self.entries()]
    .filter(([id]) => byId.get(id)!.callFrame.functionName === "(idle)")
    .reduce((a, [, t]) => a + t, 0);
  const busy = total - idle;

  const categories = new Map<string, number>();
  for (const [id, t] of self) {
    const c = categoryOf(id);
    categories.set(c, (categories.get(c) ?? 0) + t);
  }

  const key = (f: CallFrame) =>
    `${f.functionName || "(anonymous)"} ${f.url ? `${f.url.replace(/^.*\/(node_modules|src|gen|bench)\//, "$1/")}:${f.lineNumber + 1}` : "(native)"}`;
  const selfByFn = new Map<string, { t: number; cat: string }>();
  for (const [id, t] of self) {
    const node = byId.get(id)!;
    const k = key(node.callFrame);
    const entry = selfByFn.get(k) ?? { t: 0, cat: categoryOf(id) };
    entry.t += t;
    selfByFn.set(k, entry);
  }

  // Total (inclusive) time per function, counting a function once per stack.
  const inclusive = new Map<string, number>();
  const walk = (id: number, onStack: Set<string>): number => {
    const node = byId.get(id)!;
    let sum = self.get(id) ?? 0;
    const k = key(node.callFrame);
    const fresh = !onStack.has(k);
    if (fresh) onStack.add(k);
    for (const c of node.children ?? []) sum += walk(c, onStack);
    if (fresh) {
      onStack.delete(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + sum);
    }
    return sum;
  };
  const root = profile.nodes[0]!.id;
  walk(root, new Set());

  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
  const out: string[] = [];
  out.push(
    `# ${file}`,
    `wall ${ms(profile.endTime - profile.startTime)}, sampled ${ms(total)}, idle ${ms(idle)}, busy ${ms(busy)} (percentages are of busy time)`,
    ...(exclude.size > 0
      ? [`left out: ${ms(excludedUs)} in ${[...exclude].join(", ")} and what they call`]
      : []),
    "",
    "## by category (self time)",
  );
  for (const [c, t] of [...categories]
    .filter(([c]) => c !== "(idle)")
    .sort((a, b) => b[1] - a[1])) {
    out.push(`${ms(t)} ${pct(t)}  ${c}`);
  }
  out.push("", `## top ${top} functions by self time`);
  for (const [k, { t, cat }] of [...selfByFn]
    .filter(([k]) => !k.startsWith("(idle)"))
    .sort((a, b) => b[1].t - a[1].t)
    .slice(0, top)) {
    out.push(`${ms(t)} ${pct(t)}  ${k}  [${cat}]`);
  }
  out.push("", `## top ${top} of our functions (src/) by total time`);
  for (const [k, t] of [...inclusive]
    .filter(([k]) => / src\//.test(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    out.push(`${ms(t)} ${pct(t)}  ${k}`);
  }
  process.stdout.write(`${out.join("\n")}\n\n`);
}
