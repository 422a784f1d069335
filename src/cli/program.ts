import { Command, CommanderError, Option } from "commander";
import { VERSION } from "../package-info.js";
import { DEFAULT_SERVER } from "./client.js";
import { registerBackup } from "./commands/backup.js";
import { registerJobCommands } from "./commands/jobs.js";
import { registerKeygen } from "./commands/keygen.js";
import { registerNodes } from "./commands/nodes.js";
import { registerSchedules } from "./commands/schedules.js";
import { registerServe } from "./commands/serve.js";
import { registerSubmit } from "./commands/submit.js";
import { CliError, EXIT } from "./exit-codes.js";

/**
 * The `jobqueue` command: a client of the public API (every command is an RPC anyone can call),
 * plus `serve`, `keygen` and `backup`, which work on this machine.
 *
 * Joining with the operator API and the event stream (issues 10 and 8): `retry`, `delete` and the
 * bulk forms beside `cancel` (commands/jobs.ts); `stats` (GetJobCounts / GetQueueStats);
 * `queues list|get|create|update|pause|resume|delete` and `schedules …` as command groups of their
 * own (commands/queues.ts, commands/schedules.ts), each registered below.
 */

export function createProgram(): Command {
  const program = new Command("jobqueue")
    .description("Submit, watch and manage JobQueue jobs; run the server")
    .version(VERSION, "-V, --version")
    .addOption(
      new Option("--server <url>", `the server (default: ${DEFAULT_SERVER})`).env(
        "JOBQUEUE_SERVER",
      ),
    )
    .addOption(
      new Option(
        "-k, --api-key <key>",
        "an API key (prefer the environment: argv is visible to ps)",
      ).env("JOBQUEUE_API_KEY"),
    )
    .option(
      "--no-color",
      "no colours (they are only used on a terminal anyway; NO_COLOR works too)",
    )
    .showHelpAfterError("(jobqueue --help lists the commands)")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text) });
  program.addHelpText(
    "after",
    `
Exit codes:
  0  done (with --wait and watch: the job succeeded)
  1  the job failed (--wait, watch)
  2  bad usage or input (INVALID_ARGUMENT)
  3  no such job (NOT_FOUND)
  4  the key is missing, refused, or its role may not do this
  5  the server cannot be reached or is unavailable
  6  not possible in the job's state (FAILED_PRECONDITION), or a conflict
  7  the job was canceled (--wait, watch)
  8  any other error`,
  );
  registerServe(program);
  registerSubmit(program);
  registerJobCommands(program);
  registerNodes(program);
  registerSchedules(program);
  registerKeygen(program);
  registerBackup(program);
  for (const c of program.commands) c.exitOverride();
  return program;
}

/** Commander's own errors (unknown option, missing argument): usage, exit 2; help and version: 0. */
export function commanderExit(err: unknown): number | null {
  if (!(err instanceof CommanderError)) return null;
  if (
    err.code === "commander.helpDisplayed" ||
    err.code === "commander.version" ||
    err.code === "commander.help"
  ) {
    return EXIT.ok;
  }
  return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
}

export { CliError };
