import { Command, CommanderError, Option } from "commander";
import { VERSION } from "../package-info.js";
import { DEFAULT_SERVER } from "./client.js";
import { registerBackup } from "./commands/backup.js";
import { registerJobCommands } from "./commands/jobs.js";
import { registerKeygen } from "./commands/keygen.js";
import { registerNodes } from "./commands/nodes.js";
import { registerOperateCommands } from "./commands/operate.js";
import { registerQueues } from "./commands/queues.js";
import { registerSchedules } from "./commands/schedules.js";
import { registerServe } from "./commands/serve.js";
import { registerStats } from "./commands/stats.js";
import { registerSubmit } from "./commands/submit.js";
import { registerWatch } from "./commands/watch.js";
import { CliError, EXIT } from "./exit-codes.js";

/**
 * The `jobqueue` command: a client of the public API (every command is an RPC anyone can call),
 * plus `serve`, `keygen` and `backup`, which work on this machine. Each command group is a file
 * of commands/ with a `register…(program)`, called below.
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
  3  no such job, queue or operation (NOT_FOUND); watch: the job was deleted
  4  the key is missing, refused, or its role may not do this
  5  the server cannot be reached or is unavailable (watch: after retrying for a while)
  6  not possible in the job's state (FAILED_PRECONDITION), or a conflict
  7  the job was canceled (--wait, watch)
  8  any other error, a bulk operation that failed included
  9  a bulk action not confirmed: the answer was not y, or no terminal and no --yes
 10  a bulk operation was canceled before its end (Ctrl-C); what it did stays done
130  interrupted (Ctrl-C): a watch of a filter stopped, or a bulk operation left running`,
  );
  registerServe(program);
  registerSubmit(program);
  registerJobCommands(program);
  registerWatch(program);
  registerOperateCommands(program);
  registerStats(program);
  registerQueues(program);
  registerNodes(program);
  registerSchedules(program);
  registerKeygen(program);
  registerBackup(program);
  const override = (c: Command) => {
    c.exitOverride();
    for (const sub of c.commands) override(sub);
  };
  for (const c of program.commands) override(c);
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
