/**
 * A progress bar on stderr, no dependency. On a terminal it redraws one line; otherwise (CI, a
 * pipe) it prints a line when the phase changes and then every 10 seconds.
 */
export interface ProgressBar {
  /** Starts a phase (one of `totalPhases`). */
  phase(label: string): void;
  /** Progress within the current phase. */
  update(stage: string, done: number, total: number): void;
  /** Prints a line above the bar. */
  log(line: string): void;
  stop(): void;
}

export function createProgressBar(totalPhases: number): ProgressBar {
  const tty = process.stderr.isTTY === true;
  const started = performance.now();
  let phases = 0;
  let label = "";
  let phaseStarted = started;
  let stage = "";
  let done = 0;
  let total = 0;
  let lastPrint = 0;
  let drawn = false;

  const seconds = (ms: number) => `${(ms / 1000).toFixed(0)}s`;
  const render = () => {
    const now = performance.now();
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const width = 24;
    const filled = Math.round(frac * width);
    const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
    const overall = Math.min(
      100,
      Math.floor(((Math.max(0, phases - 1) + frac) / totalPhases) * 100),
    );
    const count = total > 0 ? ` ${done}/${total}` : "";
    return `[${overall}% ${seconds(now - started)}] ${label} ${stage ? `(${stage}) ` : ""}${bar} ${Math.round(frac * 100)}%${count} ${seconds(now - phaseStarted)}`;
  };
  const draw = () => {
    if (tty) {
      const line = render();
      const cols = process.stderr.columns ?? 120;
      process.stderr.write(`\r\x1b[2K${line.slice(0, cols - 1)}`);
      drawn = true;
    } else if (performance.now() - lastPrint > 10_000) {
      lastPrint = performance.now();
      process.stderr.write(`${render()}\n`);
    }
  };
  const timer = setInterval(draw, tty ? 200 : 1000);
  timer.unref();

  return {
    phase(next) {
      phases++;
      label = next;
      phaseStarted = performance.now();
      stage = "";
      done = 0;
      total = 0;
      lastPrint = 0;
      draw();
    },
    update(s, d, t) {
      stage = s;
      done = d;
      total = t;
    },
    log(line) {
      if (tty && drawn) process.stderr.write("\r\x1b[2K");
      process.stderr.write(`${line}\n`);
      if (tty) draw();
    },
    stop() {
      clearInterval(timer);
      if (tty && drawn) process.stderr.write("\r\x1b[2K");
    },
  };
}
