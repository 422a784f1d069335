import { createInterface } from "node:readline";

/** What the person at the terminal answered: yes, anything else, or Ctrl-C / end of input. */
export type Answer = "yes" | "no" | "interrupted";

/** Whether there is a person to ask: stdin is a terminal. */
export function canAsk(): boolean {
  return process.stdin.isTTY === true;
}

/**
 * Asks a yes/no question on the terminal (the question on stderr, the answer from stdin). Only
 * "y" or "yes" is a yes; Ctrl-C or the end of input is "interrupted".
 */
export function askYesNo(question: string): Promise<Answer> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    let settled = false;
    const done = (a: Answer) => {
      if (settled) return;
      settled = true;
      rl.close();
      // The interface paused stdin; leave it paused so that it does not hold the process open.
      process.stdin.pause();
      resolve(a);
    };
    rl.on("SIGINT", () => {
      process.stderr.write("\n");
      done("interrupted");
    });
    rl.on("close", () => done("interrupted"));
    rl.question(question, (answer) => {
      done(/^\s*y(es)?\s*$/i.test(answer) ? "yes" : "no");
    });
  });
}
