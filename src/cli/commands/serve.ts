import type { Command } from "commander";

/** `serve`: starts the server in this process, exactly as `npm start` does (configured by JOBQUEUE_*). */
export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("start the server (as npm start does; configured by the JOBQUEUE_* environment)")
    .action(async () => {
      const { runServer } = await import("../../main.js");
      await runServer([]);
    });
}
