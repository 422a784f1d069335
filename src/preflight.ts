import { accessSync, constants, statSync } from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import type { Config } from "./config.js";

/**
 * A start-up check that failed: `message` is the one line an operator needs (what, where, which
 * setting), `fields` what goes beside it in the log line.
 */
export class PreflightError extends Error {
  override readonly name = "PreflightError";
  constructor(
    message: string,
    readonly fields: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/**
 * Checks, before anything is created on disk, what would otherwise fail half-way through a start:
 * the port can be bound, and the data directory can be written (or created). Creates nothing;
 * throws a {@link PreflightError}.
 */
export async function preflight(config: Config): Promise<void> {
  checkDataDir(config);
  await checkPort(config.host, config.port);
}

/** Binds the port for a moment. Port 0 (any free port) always passes. */
export async function checkPort(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen({ host, port, exclusive: true }, () => resolve());
    });
  } catch (err) {
    throw new PreflightError(listenProblem(err, host, port), {
      code: (err as NodeJS.ErrnoException).code,
    });
  } finally {
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

/** The sentence for a failed listen, naming the setting to change. */
export function listenProblem(err: unknown, host: string, port: number): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case "EADDRINUSE":
      return `port ${port} on ${host} is in use (JOBQUEUE_PORT)`;
    case "EACCES":
      return `no permission to listen on port ${port} (JOBQUEUE_PORT): ports below 1024 need privileges`;
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `cannot listen on ${host}: no such local address (JOBQUEUE_HOST)`;
    default:
      return `cannot listen on ${host}:${port}: ${(err as Error).message}`;
  }
}

const WHY: Record<string, string> = {
  EROFS: "is on a read-only file system",
  EACCES: "is not writable by this user",
  EPERM: "is not writable by this user",
  ENOTDIR: "is not a directory",
};

/**
 * The database's directory must exist and be writable (SQLite writes the database, its WAL and
 * shared-memory files there, and `secret.key` goes beside them), or be creatable: its nearest
 * existing ancestor is a writable directory. An existing database file must be readable and
 * writable.
 */
export function checkDataDir(config: Pick<Config, "db" | "secretKeys">): void {
  if (config.db.kind !== "sqlite" || config.db.path === ":memory:") return;
  const dbPath = config.db.path;
  const dir = dirname(dbPath);
  const fail = (path: string, code: string, what: string) => {
    throw new PreflightError(
      `${what} ${path} ${WHY[code] ?? `cannot be used (${code})`} (${code}): the database and its WAL are written there (JOBQUEUE_DB_URL)`,
      { path, code },
    );
  };
  let existing = dir;
  for (;;) {
    try {
      if (!statSync(existing).isDirectory()) fail(existing, "ENOTDIR", "data directory");
      break;
    } catch (err) {
      if (err instanceof PreflightError) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? "";
      if (code !== "ENOENT") fail(existing, code, "data directory");
      const parent = dirname(existing);
      if (parent === existing) break;
      existing = parent;
    }
  }
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    if (existing === dir) fail(dir, code, "data directory");
    throw new PreflightError(
      `data directory ${dir} does not exist and cannot be created: ${existing} ${WHY[code] ?? `cannot be used (${code})`} (${code}) (JOBQUEUE_DB_URL)`,
      { path: dir, code },
    );
  }
  if (existing !== dir) return;
  const files = [dbPath, `${dbPath}-wal`, `${dbPath}-shm`];
  if (config.secretKeys === null) files.push(join(dir, "secret.key"));
  for (const file of files) {
    try {
      accessSync(file, constants.R_OK | (file.endsWith("secret.key") ? 0 : constants.W_OK));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "";
      if (code === "ENOENT") continue;
      const why = code === "EACCES" || code === "EPERM" ? "permission denied" : code;
      throw new PreflightError(`cannot open ${file}: ${why} (${code}) (JOBQUEUE_DB_URL)`, {
        path: file,
        code,
      });
    }
  }
}
