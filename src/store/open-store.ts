import type { DbTarget } from "../config.js";
import type { CallbackSettings } from "../job/callbacks.js";
import type { Clock } from "../job/clock.js";
import type { JobStore } from "./job-store.js";
import { createPostgresJobStore } from "./postgres/postgres-job-store.js";
import { createSqliteJobStore } from "./sqlite/sqlite-job-store.js";

/** Opens the store a database URL names, with its migrations applied. */
export async function openStore(
  target: DbTarget,
  options: {
    poolSize?: number;
    clock?: Clock;
    minFreeBytes?: number;
    /** SQLite: told of each group commit (the metrics). */
    onCommit?: (commit: { writes: number; ms: number }) => void;
    /** How callback deliveries are made. */
    callbacks?: CallbackSettings;
  } = {},
): Promise<JobStore> {
  if (target.kind === "sqlite")
    return createSqliteJobStore({
      path: target.path,
      clock: options.clock,
      minFreeBytes: options.minFreeBytes,
      onCommit: options.onCommit,
      callbacks: options.callbacks,
    });
  return createPostgresJobStore({
    url: target.url,
    schema: target.schema,
    poolSize: options.poolSize,
    clock: options.clock,
    callbacks: options.callbacks,
  });
}
