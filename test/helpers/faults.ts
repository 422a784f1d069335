import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const SHIM_SOURCE = fileURLToPath(new URL("./fault-shim.c", import.meta.url));

/** A fault that the shim injects into calls on files under its target directory. */
export type Fault = "fsync" | "write" | "read";

/** The storage-fault shim, built for a process to preload; see fault-shim.c. */
export interface FaultShim {
  /** The environment that preloads the shim into a process, aimed at files under `target`. */
  env(target: string): Record<string, string>;
  /** Makes the calls of `fault` fail with EIO from now on (in every process preloading it). */
  on(fault: Fault): void;
  off(fault: Fault): void;
  cleanup(): void;
}

/**
 * Compiles fault-shim.c with the C compiler; resolves with a reason instead when there is none
 * (a test then skips with it).
 */
export async function buildFaultShim(): Promise<FaultShim | { skip: string }> {
  const dir = mkdtempSync(join(tmpdir(), "jobqueue-faults-"));
  const lib = join(dir, "fault-shim.so");
  try {
    await run("cc", ["-shared", "-fPIC", "-O2", "-o", lib, SHIM_SOURCE, "-ldl"]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `cannot build the storage-fault shim (cc: ${(err as Error).message})` };
  }
  const switches = join(dir, "switches");
  mkdirSync(switches);
  return {
    env: (target) => ({ LD_PRELOAD: lib, FAULT_DIR: switches, FAULT_TARGET: target }),
    on(fault) {
      writeFileSync(join(switches, `fail-${fault}`), "");
    },
    off(fault) {
      rmSync(join(switches, `fail-${fault}`), { force: true });
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A small tmpfs of a test's own, to fill up and to turn read-only. */
export interface Tmpfs {
  readonly dir: string;
  /** Fills the file system up to its last byte (with a file of its own). */
  fill(): void;
  /** Deletes what {@link fill} wrote. */
  free(): void;
  /** Remounts it read-only (refused while a process holds a file open for writing on it). */
  readOnly(): Promise<void>;
  readWrite(): Promise<void>;
  unmount(): Promise<void>;
}

/**
 * Mounts a tmpfs of `sizeBytes` (root only); resolves with a reason instead when mounting is not
 * possible here (a test then skips with it).
 */
export async function mountTmpfs(sizeBytes: number): Promise<Tmpfs | { skip: string }> {
  const dir = mkdtempSync(join(tmpdir(), "jobqueue-tmpfs-"));
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${sizeBytes}`, "tmpfs", dir]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const why = process.getuid?.() === 0 ? (err as Error).message.trim() : "not running as root";
    return { skip: `cannot mount a tmpfs (${why})` };
  }
  const filler = join(dir, "filler");
  return {
    dir,
    fill() {
      // Big writes first, then ever smaller ones, until not one more byte fits.
      for (let chunk = 1 << 20; chunk >= 1; chunk >>= 4) {
        const bytes = Buffer.alloc(chunk);
        for (;;) {
          try {
            writeFileSync(filler, bytes, { flag: "a" });
          } catch {
            break;
          }
        }
      }
    },
    free() {
      rmSync(filler, { force: true });
    },
    async readOnly() {
      await run("mount", ["-o", "remount,ro", dir]);
    },
    async readWrite() {
      await run("mount", ["-o", "remount,rw", dir]);
    },
    async unmount() {
      await run("umount", ["-l", dir]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
