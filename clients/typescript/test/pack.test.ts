import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTarget, type Target } from "../../../test/helpers/target.js";
import { startTestApp, type TestApp } from "../../../test/helpers/test-app.js";

// The package as another service gets it: `npm pack` (which builds it), unpacked into a
// node_modules folder, imported by plain Node (no TypeScript) and used against a real server.

// Asynchronous on purpose: the server runs in this process and must keep answering meanwhile.
const run = promisify(execFile);

const PACKAGE = fileURLToPath(new URL("..", import.meta.url));
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

let target: Target;
let app: TestApp;
let work: string;

beforeAll(async () => {
  target = await startTarget();
  app = await startTestApp();
  // Inside the repository, so the unpacked package finds its dependencies in node_modules above.
  mkdirSync(join(ROOT, ".tmp"), { recursive: true });
  work = mkdtempSync(join(ROOT, ".tmp", "pack-"));
});

afterAll(async () => {
  await app?.stop();
  await target?.close();
  rmSync(work, { recursive: true, force: true });
});

it("npm pack builds a package of the compiled code and types that plain Node can import and use", {
  timeout: 180_000,
}, async () => {
  const { stdout: out } = await run("npm", ["pack", "--json", "--pack-destination", work], {
    cwd: PACKAGE,
  });
  const [packed] = JSON.parse(out.slice(out.indexOf("["))) as {
    filename: string;
    files: { path: string }[];
  }[];
  const files = packed!.files.map((f) => f.path);
  for (const file of [
    "package.json",
    "README.md",
    "dist/index.js",
    "dist/index.d.ts",
    "dist/gen/jobqueue/v1/job_queue_service_pb.js",
    "dist/gen/google/api/annotations_pb.js",
  ]) {
    expect(files).toContain(file);
  }
  expect(files.filter((f) => f.startsWith("src/") || f.startsWith("test/"))).toEqual([]);

  const installed = join(work, "node_modules", "@jobqueue", "client");
  mkdirSync(installed, { recursive: true });
  await run("tar", ["-xzf", join(work, packed!.filename), "-C", installed, "--strip-components=1"]);
  const script = join(work, "use.mjs");
  writeFileSync(
    script,
    `import { createJobQueueClient, JobQueueError } from "@jobqueue/client";
const client = createJobQueueClient({ baseUrl: process.argv[2], protocol: "grpc" });
const { jobId } = await client.enqueue({ url: process.argv[3], body: { from: "the packed client" } });
const job = await client.waitUntilDone(jobId);
let error;
try { await client.enqueue({ url: "ftp://x/" }); } catch (err) { error = err instanceof JobQueueError && [err.code, err.field]; }
console.log(JSON.stringify({ status: job.status, method: job.method, error }));
`,
  );
  const used = await run(process.execPath, [script, app.url, `${target.url}/packed`], {
    cwd: work,
  });
  expect(JSON.parse(used.stdout)).toEqual({
    status: "succeeded",
    method: "POST",
    error: ["invalid_argument", "url"],
  });
  const [received] = target.received("/packed");
  expect(JSON.parse(received!.body.toString())).toEqual({ from: "the packed client" });
});
