import { realpathSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import type { Logger } from "pino";
import { type App, createApp } from "./app.js";
import { type Config, ConfigError, loadConfig, unknownVariables } from "./config.js";
import { createLogDestination } from "./log/log-destination.js";
import { createLogger } from "./log/logger.js";
import { VERSION } from "./package-info.js";
import { listenProblem, PreflightError, preflight } from "./preflight.js";
import { parseServerArgs, usage } from "./server-args.js";
import { StoreUnavailableError } from "./store/job-store.js";

/**
 * Grow the JavaScript heap by 20% per major GC rather than V8's default (up to 4x for a small heap).
 * Under load most garbage here (requests, responses, rows of jobs in flight) lives just long enough
 * to be promoted; with the default growth the old generation filled with it up to ~100 MB before
 * each collection, while what stays live is ~20 MB. The extra collections are cheap at that size.
 */
setFlagsFromString("--heap-growing-percent=20");

/** How long the last log lines may take to be written before the process exits anyway. */
const FINAL_FLUSH_MS = 2_000;
/**
 * A second signal within this window is the same request, delivered twice: Ctrl-C under `npm start`
 * reaches the server from the terminal's process group and again forwarded by npm.
 */
const SAME_SIGNAL_MS = 1_000;

/**
 * Reads the configuration, checks it can start, starts the service, stops it on SIGTERM/SIGINT.
 * `argv`: the arguments after the command (only --help and --version are taken).
 */
export async function runServer(argv: string[]): Promise<void> {
  const args = parseServerArgs(argv);
  if (args.action === "help" || args.action === "version") {
    process.stdout.write(args.action === "help" ? usage(VERSION) : `${VERSION}\n`);
    return;
  }
  if (args.action === "error") {
    process.stderr.write(`jobqueue: ${args.message}\n`);
    process.exitCode = 2;
    return;
  }
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`jobqueue: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
  // A warning Node writes to a closed stderr must not become an uncaught error.
  process.stderr.on("error", () => {});
  // Logging must never hold the server up: process.stdout would block on a full pipe or disk.
  let logger: Logger | null = null;
  const destination = createLogDestination({
    fd: 1,
    onRecovered: (dropped) =>
      logger?.warn({ dropped }, "log lines dropped while the log destination was full or failing"),
  });
  logger = createLogger(config.logLevel, destination);
  const exit = async (code: number): Promise<never> => {
    await destination.flush(FINAL_FLUSH_MS);
    process.exit(code);
  };

  // Signals are handled from here on: one that arrives while the server starts stops it as soon
  // as it has started (or ends the process before anything is created).
  let app: App | null = null;
  let started = false;
  let firstSignalAt: number | null = null;
  const stop = (target: App) =>
    target.stop().then(
      () => exit(0),
      (err) => {
        logger.error({ err }, "stopping failed");
        return exit(1);
      },
    );
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now();
    if (firstSignalAt !== null) {
      if (now - firstSignalAt < SAME_SIGNAL_MS) return;
      logger.warn({ signal }, "second signal; exiting now");
      void exit(1);
      return;
    }
    firstSignalAt = now;
    logger.info({ signal }, "signal received");
    if (app === null) void exit(0);
    else if (started) void stop(app);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  for (const v of unknownVariables(process.env)) {
    logger.warn(
      { variable: v.name, closest: v.closest },
      `${v.name} is not a JobQueue setting and is ignored; ${v.likelyTypo ? "did you mean" : "the closest setting is"} ${v.closest}${v.likelyTypo ? "?" : ""}`,
    );
  }

  // Nothing is created on disk (data directory, database, key file) until these pass.
  try {
    await preflight(config);
  } catch (err) {
    if (!(err instanceof PreflightError)) throw err;
    logger.fatal(err.fields, err.message);
    return exit(1);
  }
  if (firstSignalAt !== null) return;

  const where =
    config.db.kind === "sqlite" ? config.db.path : `PostgreSQL (schema ${config.db.schema})`;
  try {
    app = await createApp(config, { logger });
  } catch (err) {
    // The database could not be opened or migrated: one line naming it, no stack for the known cases.
    const code = (err as { code?: string }).code;
    const known = code !== undefined || err instanceof StoreUnavailableError;
    logger.fatal(
      known ? { code, database: where } : { err, database: where },
      `cannot open the database ${where}: ${(err as Error).message} (JOBQUEUE_DB_URL)`,
    );
    return exit(1);
  }
  if (firstSignalAt !== null) {
    await app.stop().catch(() => {});
    return exit(0);
  }
  try {
    await app.start();
  } catch (err) {
    const code = (err as { code?: string }).code;
    const known = code !== undefined && /^E[A-Z]+$/.test(code);
    logger.fatal(
      known ? { code } : { err },
      known ? listenProblem(err, config.host, config.port) : (err as Error).message,
    );
    await app.stop().catch(() => {});
    return exit(1);
  }
  started = true;
  if (firstSignalAt !== null) await stop(app);
}

// Run as the program (node dist/src/main.js), not when imported (the CLI's `serve`).
if (process.argv[1] !== undefined && import.meta.filename === realpathSync(process.argv[1])) {
  await runServer(process.argv.slice(2));
}
