#!/usr/bin/env node
// The `jobqueue` command: the compiled CLI (dist/src/cli/main.js). Like `npm start`, it first
// installs and builds what is missing or older than the sources (scripts/prestart.sh).
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const prepared = spawnSync("sh", [join(root, "scripts/prestart.sh")], {
  stdio: ["ignore", "inherit", "inherit"],
});
if (prepared.status !== 0) process.exit(prepared.status ?? 1);
await import("../dist/src/cli/main.js");
