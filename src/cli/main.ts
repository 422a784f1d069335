import { describeFailure, EXIT } from "./exit-codes.js";
import { commanderExit, createProgram } from "./program.js";

/** The `jobqueue` command's entry (bin/jobqueue.js runs it): parses, runs, exits with a documented code. */
async function main(): Promise<void> {
  const program = createProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const code = commanderExit(err);
    if (code !== null) {
      process.exitCode = code;
      return;
    }
    const server = program.opts<{ server?: string }>().server ?? process.env.JOBQUEUE_SERVER ?? "";
    const { code: exit, message } = describeFailure(err, server || "http://127.0.0.1:8080");
    process.stderr.write(`jobqueue: ${message}\n`);
    process.exitCode = exit;
    if (exit === EXIT.error && process.env.JOBQUEUE_DEBUG)
      process.stderr.write(`${(err as Error).stack}\n`);
  }
}

await main();
