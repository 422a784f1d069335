import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** The package's folder: the nearest with a package.json above this file, run from src/ or dist/. */
export const PACKAGE_ROOT: string = (() => {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

/** The version in package.json (the server's --version, its user agent, the CLI's --version). */
export const VERSION: string = JSON.parse(
  readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8"),
).version;
