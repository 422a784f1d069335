import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import type { Clock } from "../../job/clock.js";
import type { StoreSignals } from "../../notify/notifier.js";
import { type JobStore, StoreUnavailableError } from "../job-store.js";

/** A connection of the SQLite store, as the reopening store sees it. */
export interface SqliteConnection extends JobStore {
  /** Why it refuses everything and must be replaced (an fsync failed); null while usable. */
  readonly failure: StoreUnavailableError | null;
}

export interface ReopeningStoreOptions {
  /** The database file (":memory:" never fails over). */
  path: string;
  clock: Clock;
  /** The signals every connection sends (one notifier for all, so listeners stay subscribed). */
  signals: StoreSignals;
  /** Opens a connection, migrations applied; throws if it cannot. */
  open: () => SqliteConnection;
  /** The StoreUnavailableError an error stands for, or null if it is not a storage fault. */
  fault: (error: unknown) => StoreUnavailableError | null;
  /** Whether `name` is a method of a connection (only those are passed through). */
  isMethod: (name: string) => boolean;
  /** Free space the disk must have for {@link JobStore.probe} to succeed; 0: no check. */
  minFreeBytes: number;
  /** Calls other than the probe try to reopen at most this often (the probe always tries). */
  reopenEveryMs?: number;
}

/**
 * The SQLite store as callers see it: one connection at a time, replaced when it breaks. Every
 * storage fault a call meets, reads included, is a {@link StoreUnavailableError} naming the path;
 * other errors (a conflicting idempotency key, …) pass through unchanged.
 *
 * A connection breaks when an fsync fails: what it committed may not be on disk, so it refuses
 * everything, and the next call (at most once every `reopenEveryMs`) or probe closes it and opens
 * the database again, which makes SQLite recover it from its WAL. Until a reopen succeeds, calls
 * are refused with the fault at once. The same holds from the start: a database that cannot be
 * opened (a read-only directory, a full disk) is opened by a later call or probe once it can be.
 */
export function createReopeningStore(options: ReopeningStoreOptions): JobStore {
  const { path, clock } = options;
  // Reopen attempts are spaced in real time (the store's clock may be a test's, standing still).
  const reopenEveryMs = options.reopenEveryMs ?? 1_000;
  let current: SqliteConnection | null = null;
  /** Why there is no usable connection; null while there is one. */
  let fault: StoreUnavailableError | null = null;
  let lastAttempt = Number.NEGATIVE_INFINITY;
  let reopening: Promise<SqliteConnection> | null = null;
  let closed = false;

  function tryOpen(): SqliteConnection {
    try {
      current = options.open();
      fault = null;
      return current;
    } catch (err) {
      current = null;
      fault =
        options.fault(err) ??
        new StoreUnavailableError(
          `the database ${path} cannot be opened: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      throw fault;
    }
  }

  // Opened now if it can be; otherwise (a storage fault) the first call or probe tries again. Any
  // other error (not a database, no WAL on this file system) stops the start.
  try {
    current = options.open();
  } catch (err) {
    fault = options.fault(err);
    if (fault === null) throw err;
  }

  /** A usable connection, reopening the database if the current one broke (or none is open). */
  function connection(force: boolean): SqliteConnection | Promise<SqliteConnection> {
    if (closed) return Promise.reject(new StoreUnavailableError("the store is closed"));
    if (current && current.failure === null) return current;
    if (reopening) return reopening;
    if (current?.failure) fault = current.failure;
    const now = Date.now();
    if (!force && now - lastAttempt < reopenEveryMs) return Promise.reject(fault);
    lastAttempt = now;
    const broken = current;
    const attempt = (async () => {
      // Its writes were all refused (none is pending); closing only releases the file.
      if (broken) await broken.close().catch(() => {});
      current = null;
      return tryOpen();
    })();
    reopening = attempt;
    const done = () => {
      if (reopening === attempt) reopening = null;
    };
    attempt.then(done, done);
    return attempt;
  }

  /** The error a caller sees for `err`, met on connection `used`. */
  function mapError(err: unknown, used: SqliteConnection | null): unknown {
    const mapped = options.fault(err);
    if (mapped) return mapped;
    // A call caught by a reopen (its connection closed under it) is refused, not failed.
    if (used !== null && used !== current && !(err instanceof StoreUnavailableError)) {
      const name = (err as Error | null)?.name;
      if (name === "TypeError" || name === "SqliteError" || name === "RangeError") {
        return new StoreUnavailableError(`the database ${path} was reopened during the call`, {
          cause: err,
        });
      }
    }
    return err;
  }

  function call(name: string, args: unknown[]): unknown {
    const got = connection(false);
    if (got instanceof Promise) {
      return got.then(
        (conn) => invoke(conn, name, args),
        (err) => Promise.reject(mapError(err, null)),
      );
    }
    return invoke(got, name, args);
  }

  function invoke(conn: SqliteConnection, name: string, args: unknown[]): unknown {
    let out: unknown;
    try {
      out = (conn as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!(...args);
    } catch (err) {
      throw mapError(err, conn);
    }
    if (out instanceof Promise) return out.catch((err) => Promise.reject(mapError(err, conn)));
    return out;
  }

  async function probe(): Promise<void> {
    const conn = await connection(true);
    checkFreeSpace();
    try {
      await conn.probe();
    } catch (err) {
      throw mapError(err, conn);
    }
  }

  /** Fails when the disk holding the database has less room than `minFreeBytes`. */
  function checkFreeSpace(): void {
    if (options.minFreeBytes <= 0) return;
    let free: number;
    try {
      const fs = statfsSync(dirname(path));
      free = fs.bavail * fs.bsize;
    } catch {
      return; // the probe write says what is wrong
    }
    if (free < options.minFreeBytes) {
      throw new StoreUnavailableError(
        `the disk holding ${path} is nearly full: ${mib(free)} free, below the ${mib(options.minFreeBytes)} required (JOBQUEUE_MIN_FREE_DISK_MB)`,
      );
    }
  }

  const own: Partial<Record<keyof JobStore, unknown>> = {
    signals: options.signals,
    probe,
    async now() {
      return clock.now();
    },
    async close() {
      if (closed) return;
      closed = true;
      if (reopening) await reopening.catch(() => {});
      await current?.close();
    },
  };

  // One forwarding function per method, made on first use.
  const forwarders = new Map<string, (...args: unknown[]) => unknown>();
  return new Proxy({} as JobStore, {
    get(_target, prop) {
      if (typeof prop !== "string") return undefined;
      if (Object.hasOwn(own, prop)) return own[prop as keyof JobStore];
      let forward = forwarders.get(prop);
      if (forward === undefined) {
        if (!options.isMethod(prop)) return undefined;
        forward = (...args: unknown[]) => call(prop, args);
        forwarders.set(prop, forward);
      }
      return forward;
    },
    has(_target, prop) {
      return typeof prop === "string" && (Object.hasOwn(own, prop) || options.isMethod(prop));
    },
  });
}

function mib(bytes: number): string {
  return `${(bytes / 1_048_576).toFixed(1)} MiB`;
}
