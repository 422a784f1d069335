import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";

/**
 * Mounts a small tmpfs at `dir` (created if missing) and returns a function that unmounts it, or
 * returns the reason it cannot (not root, no mount(8), a container without the capability): tests
 * that need a full or read-only file system skip with that reason.
 */
export function mountTmpfs(
  dir: string,
  options: { sizeKiB: number; readOnly?: boolean },
): { unmount: () => void } | { skip: string } {
  mkdirSync(dir, { recursive: true });
  const opts = [`size=${options.sizeKiB}k`, ...(options.readOnly ? ["ro"] : [])].join(",");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", opts, "tmpfs", dir], { stdio: "pipe" });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    return { skip: `cannot mount a tmpfs (needs root and mount(8)): ${stderr || err}` };
  }
  return {
    unmount: () => {
      execFileSync("umount", ["-l", dir], { stdio: "pipe" });
    },
  };
}

/** Remounts a mounted tmpfs read-only. */
export function remountReadOnly(dir: string): void {
  execFileSync("mount", ["-o", "remount,ro", dir], { stdio: "pipe" });
}

/** Writes to `path` until the file system is full. */
export function fillDisk(path: string): void {
  const fd = openSync(path, "w");
  try {
    for (const size of [65_536, 4096, 1]) {
      const chunk = Buffer.alloc(size, 0x61);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}
