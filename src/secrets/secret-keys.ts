import { randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import type { Logger } from "pino";

/**
 * Parses JOBQUEUE_SECRET_KEY: one or more comma-separated 32-byte keys, each as 64 hex digits or
 * base64 (44 characters). The first seals new secrets; the others only open old ones (rotation).
 * Throws a message naming what is wrong, never the key itself.
 */
export function parseSecretKeys(raw: string): Buffer[] {
  return raw
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
}

/**
 * The key to use when JOBQUEUE_SECRET_KEY is unset: read from `path`, or generated once into it
 * with mode 0600. Either way it warns, because losing that file makes stored secrets unreadable.
 */
export function loadOrCreateKeyFile(path: string, logger: Logger): Buffer {
  try {
    const key = parseSecretKeys(readFileSync(path, "utf8"))[0];
    if (!key) throw new Error(`${path} holds no key`);
    if ((statSync(path).mode & 0o077) !== 0) {
      logger.warn({ path }, "the secret key file is readable by others; chmod 600 it");
    }
    logger.warn({ path }, "JOBQUEUE_SECRET_KEY is not set; using the generated key file");
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const key = randomBytes(32);
  writeFileSync(path, `${key.toString("base64")}\n`, { mode: 0o600, flag: "wx" });
  logger.warn(
    { path },
    "JOBQUEUE_SECRET_KEY is not set; generated a key into this file (mode 0600). Back it up: without it, secret headers of stored jobs cannot be read",
  );
  return key;
}
