// `npm run build`: compiles src/ and gen/ to dist/ with tsc, copies the files tsc does not
// (the SQL migrations), and stamps the build so that `npm start` rebuilds only after a change.
import { spawnSync } from "node:child_process";
import { cpSync, statSync, utimesSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tsc = spawnSync(
  process.execPath,
  [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.build.json")],
  {
    stdio: "inherit",
  },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
cpSync(join(root, "src"), join(root, "dist/src"), {
  recursive: true,
  filter: (path) => statSync(path).isDirectory() || path.endsWith(".sql"),
});
const now = new Date();
utimesSync(join(root, "dist/.tsbuildinfo"), now, now);
