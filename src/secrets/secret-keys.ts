import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "pino";

/**
 * Parses JOBQUEUE_SECRET_KEY: one or more comma-separated 32-byte keys, each as 64 hex digits or
 * base64 (44 characters). The first seals new secrets; the others only open old ones (rotation).
 * Throws a message naming what is wrong, never the key itself.
 */
export function parseSecretKeys(raw: string): Buffer[] {
  const keys = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((text, i) => {
      const key = /^[0-9a-f]{64}$/i.test(text)
        ? Buffer.from(text, "hex")
        : Buffer.from(text, "base64");
      if (key.length !== 32 || (!/^[0-9a-f]{64}$/i.test(text) && key.toString("base64") !== text)) {
        throw new Error(`key ${i + 1} is not 32 bytes as 64 hex digits or base64`);
      }
      return key;
    });
  // "," alone would otherwise pass here and fail later, far from the setting that caused it.
  if (keys.length === 0) throw new Error("holds no key");
  return keys;
}

/**
 * The key to use when JOBQUEUE_SECRET_KEY is unset: read from `path`, or generated once into it
 * with mode 0600. Either way it warns, because losing that file makes stored secrets unreadable.
 */
export function loadOrCreateKeyFile(path: string, logger: Logger): Buffer {
  let text: string | null = null;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (text !== null) {
    let key: Buffer;
    try {
      key = parseSecretKeys(text)[0]!;
    } catch (err) {
      // Never replaced: a new key would make every stored secret unreadable.
      throw new Error(`the secret key file ${path}: ${(err as Error).message}`);
    }
    if ((statSync(path).mode & 0o077) !== 0) {
      logger.warn({ path }, "the secret key file is readable by others; chmod 600 it");
    }
    logger.warn({ path }, "JOBQUEUE_SECRET_KEY is not set; using the generated key file");
    return key;
  }
  const key = randomBytes(32);
  writeDurably(path, `${key.toString("base64")}\n`);
  logger.warn(
    { path },
    "JOBQUEUE_SECRET_KEY is not set; generated a key into this file (mode 0600). Back it up: without it, secret headers of stored jobs cannot be read",
  );
  return key;
}

/**
 * Creates `path` (mode 0600, failing if it exists) and fsyncs it and its directory: the jobs are
 * on disk before an enqueue is acknowledged, so the key that opens their secrets must be too.
 */
function writeDurably(path: string, text: string): void {
  const fd = openSync(path, "wx", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
