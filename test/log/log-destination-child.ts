import { createLogDestination } from "../../src/log/log-destination.js";

// A process whose stdout is the destination under test: it writes `lines` log lines as fast as it
// can once its parent says "go" on stdin, then reports on stderr what the destination did. If a
// write blocked the event loop, the report would never come.

const { lines, maxBufferedBytes } = JSON.parse(process.argv[2]!) as {
  lines: number;
  maxBufferedBytes: number;
};
const destination = createLogDestination({ fd: 1, maxBufferedBytes });
process.stdin.once("data", () => {
  process.stdin.destroy();
  for (let i = 0; i < lines; i++) {
    destination.write(`${JSON.stringify({ level: "info", i, pad: "x".repeat(80) })}\n`);
  }
  const report = (when: string) =>
    process.stderr.write(
      `${JSON.stringify({ when, dropped: destination.dropped, buffered: destination.buffered, gone: destination.gone })}\n`,
    );
  // A timer runs: the loop is free while the pipe is full or gone.
  setTimeout(() => {
    report("timer");
    void destination.flush(200).then(() => report("flushed"));
  }, 20);
});
