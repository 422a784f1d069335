import { chmodSync, copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { contextOf } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";

const DEFAULT_DB = "sqlite+aiosqlite:///./data/jobqueue.db";

/**
 * `backup <dir>`: an online backup of the SQLite store (SQLite's backup API through
 * better-sqlite3's `db.backup()`: a consistent copy while the server keeps running) and of the
 * `secret.key` beside it, without which the copy's secret headers cannot be opened. Checked with
 * `PRAGMA quick_check` before it is reported done.
 *
 * Restore (README, "CLI"): stop the server; put `jobqueue.db` and `secret.key` from the backup
 * in the data folder (removing any `jobqueue.db-wal` and `-shm` there); start it.
 */
export function registerBackup(program: Command): void {
  program
    .command("backup")
    .description("copy the SQLite store and its secret.key to a folder, while the server runs")
    .argument("<dir>", "the folder to write jobqueue.db and secret.key into (created if missing)")
    .option("--db <url-or-path>", "the store (default: JOBQUEUE_DB_URL, else ./data/jobqueue.db)")
    .option("--secret-key-file <path>", "the key file (default: secret.key beside the database)")
    .option("--force", "overwrite a backup already in the folder")
    .action(
      async (
        dir: string,
        opts: { db?: string; secretKeyFile?: string; force?: boolean },
        cmd: Command,
      ) => {
        const { o } = contextOf(cmd);
        // Loaded here, not at start: every other command starts without them.
        const { default: Database } = await import("better-sqlite3");
        const { ConfigError, parseDbUrl } = await import("../../config.js");
        let target: ReturnType<typeof parseDbUrl>;
        try {
          target = parseDbUrl(opts.db ?? process.env.JOBQUEUE_DB_URL ?? DEFAULT_DB);
        } catch (err) {
          if (err instanceof ConfigError) throw new CliError(`--db: ${err.message}`, EXIT.usage);
          throw err;
        }
        if (target.kind !== "sqlite") {
          throw new CliError(
            "backup copies a SQLite store; back PostgreSQL up with its own tools (pg_dump --schema=<schema>)",
            EXIT.usage,
          );
        }
        if (target.path === ":memory:")
          throw new CliError("the store is in memory: nothing to back up", EXIT.usage);
        const source = resolve(target.path);
        if (!existsSync(source)) throw new CliError(`no database at ${source}`, EXIT.notFound);
        const out = resolve(dir);
        const dbOut = join(out, "jobqueue.db");
        const keyOut = join(out, "secret.key");
        if (existsSync(dbOut) && !opts.force) {
          throw new CliError(
            `${dbOut} exists: choose another folder or pass --force`,
            EXIT.conflict,
          );
        }
        mkdirSync(out, { recursive: true });
        for (const f of [dbOut, `${dbOut}-wal`, `${dbOut}-shm`]) rmSync(f, { force: true });

        const started = performance.now();
        const db = new Database(source, { readonly: true, fileMustExist: true });
        let pages = 0;
        try {
          await db.backup(dbOut, {
            progress({ totalPages }) {
              pages = totalPages;
              // The rest in one step: a copy that is never restarted by the server's writes.
              return totalPages;
            },
          });
        } finally {
          db.close();
        }
        chmodSync(dbOut, 0o600);
        const copy = new Database(dbOut, { readonly: true });
        try {
          const check = copy.pragma("quick_check", { simple: true });
          if (check !== "ok")
            throw new CliError(`the copy failed its check: ${String(check)}`, EXIT.error);
        } finally {
          copy.close();
        }

        const keyFile = resolve(opts.secretKeyFile ?? join(dirname(source), "secret.key"));
        let keyNote: string;
        if (process.env.JOBQUEUE_SECRET_KEY) {
          keyNote = "secret key: JOBQUEUE_SECRET_KEY is set; keep that value with this backup";
        } else if (existsSync(keyFile)) {
          copyFileSync(keyFile, keyOut);
          chmodSync(keyOut, 0o600);
          keyNote = `secret key: ${keyOut}`;
        } else {
          keyNote = `secret key: none at ${keyFile} (no secret header has been stored, or the key lives elsewhere)`;
        }
        const ms = Math.round(performance.now() - started);
        o.err(`backed up ${source} (${pages} pages) to ${dbOut} in ${ms} ms\n${keyNote}\n`);
      },
    );
}
