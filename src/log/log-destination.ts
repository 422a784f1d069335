import { fstatSync, write as fsWrite } from "node:fs";
import net from "node:net";

/** Where pino writes its lines: never blocks the event loop, never throws, drops rather than waits. */
export interface LogDestination {
  /** Queues one line (pino passes complete lines ending in "\n"); drops it if the buffer is full. */
  write(line: string): void;
  /** Lines dropped so far: buffer full, destination failing (disk full) or gone (pipe closed). */
  readonly dropped: number;
  /** Bytes queued and not yet written. */
  readonly buffered: number;
  /** Whether the destination is gone for good (a closed pipe, a closed descriptor). */
  readonly gone: boolean;
  /**
   * Resolves once everything queued is written, the destination is gone, or `timeoutMs` passed,
   * whichever comes first. For the last lines before the process exits.
   */
  flush(timeoutMs: number): Promise<void>;
}

export interface LogDestinationOptions {
  /** The file descriptor to write to (1: stdout). */
  fd: number;
  /** Bytes kept in memory while the destination is slow or failing; beyond it lines are dropped. */
  maxBufferedBytes?: number;
  /** Milliseconds between retries after a failed write to a file (disk full, I/O error). */
  retryMs?: number;
  /** Called (never from inside `write`) when lines can be written again after some were dropped. */
  onRecovered?: (dropped: number) => void;
}

/** Write errors after which the descriptor will never take a line again. */
const GONE = new Set(["EPIPE", "EBADF", "ECONNRESET", "ERR_STREAM_DESTROYED", "EINVAL"]);

/**
 * A log destination that keeps logging off the event loop's critical path.
 *
 * pino's default (sonic-boom writing synchronously to fd 1) blocks the event loop while a pipe is
 * full, and on a write error other than EPIPE (ENOSPC on a full disk) emits an `error` nobody
 * listens to, which throws out of whatever code was logging; sonic-boom's asynchronous mode keeps
 * every unwritten line in memory without bound. Here:
 *
 * - a pipe or socket is written through a non-blocking libuv stream (never `process.stdout`, which
 *   Node makes blocking for pipes on Linux). Non-blocking is a property of the pipe, shared by every
 *   process holding the same end: one that set it back to blocking afterwards (a Node parent that
 *   first touches its own `process.stdout` later) would make these writes block again. npm, under
 *   `npm start`, sets up its stdout before it starts the server;
 * - a file, terminal or character device is written with one `fs.write` at a time on the thread
 *   pool, so a slow disk delays lines, not the server;
 * - at most `maxBufferedBytes` wait in memory; further lines are dropped and counted;
 * - a failing file (ENOSPC, EIO, EDQUOT, EFBIG) drops what it could not take and is retried every
 *   `retryMs`; a closed pipe (EPIPE) or descriptor is given up, and every later line is dropped.
 */
export function createLogDestination(options: LogDestinationOptions): LogDestination {
  const maxBufferedBytes = options.maxBufferedBytes ?? 1 << 20;
  const retryMs = options.retryMs ?? 1000;
  let kind: "stream" | "file" = "file";
  try {
    const stat = fstatSync(options.fd);
    if (stat.isFIFO() || stat.isSocket()) kind = "stream";
  } catch {
    // A closed descriptor: the file writer reports EBADF on the first line and gives up.
  }
  if (kind === "stream") {
    try {
      return streamDestination(options.fd, maxBufferedBytes, options.onRecovered);
    } catch {
      // A descriptor libuv cannot open as a stream (e.g. a UDP socket): write it as a file.
    }
  }
  return fileDestination(options.fd, maxBufferedBytes, retryMs, options.onRecovered);
}

function streamDestination(
  fd: number,
  maxBufferedBytes: number,
  onRecovered: ((dropped: number) => void) | undefined,
): LogDestination {
  const socket = new net.Socket({ fd, readable: false, writable: true });
  // An idle log pipe must not keep the process alive; writes in flight still do.
  socket.unref();
  let dropped = 0;
  let droppedSinceReport = 0;
  let gone = false;
  /** Writes libuv has not completed yet. */
  let pending = 0;
  const flushed = new Set<() => void>();
  const settle = () => {
    if (!(gone || pending === 0)) return;
    for (const resolve of flushed) resolve();
    flushed.clear();
  };
  const written = (err?: Error | null) => {
    pending -= 1;
    if (err) {
      dropped += 1;
      droppedSinceReport += 1;
    } else if (droppedSinceReport > 0 && onRecovered) {
      const lost = droppedSinceReport;
      droppedSinceReport = 0;
      onRecovered(lost);
    }
    settle();
  };
  socket.on("error", () => {
    gone = true;
    socket.destroy();
    settle();
  });
  return {
    write(line) {
      if (gone || socket.writableLength + line.length > maxBufferedBytes) {
        dropped += 1;
        droppedSinceReport += 1;
        return;
      }
      pending += 1;
      socket.write(line, written);
    },
    get dropped() {
      return dropped;
    },
    get buffered() {
      return gone ? 0 : socket.writableLength;
    },
    get gone() {
      return gone;
    },
    flush(timeoutMs) {
      if (gone || pending === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(done, timeoutMs);
        function done() {
          clearTimeout(timer);
          flushed.delete(done);
          resolve();
        }
        flushed.add(done);
      });
    },
  };
}

function fileDestination(
  fd: number,
  maxBufferedBytes: number,
  retryMs: number,
  onRecovered: ((dropped: number) => void) | undefined,
): LogDestination {
  /** Lines waiting to be written: queue[head..]. */
  let queue: string[] = [];
  let head = 0;
  let queuedBytes = 0;
  /** The batch being written (bytes not yet taken by the descriptor), and its line count. */
  let writing: { data: Buffer; lines: number; written: number } | null = null;
  /** Whether the file ends in the middle of a line (a write that failed part-way). */
  let torn = false;
  let retryTimer: NodeJS.Timeout | null = null;
  let gone = false;
  let dropped = 0;
  let droppedSinceReport = 0;
  const flushed = new Set<() => void>();

  const drop = (lines: number) => {
    dropped += lines;
    droppedSinceReport += lines;
  };
  const idle = () => writing === null && head === queue.length;
  const settle = () => {
    if (!(gone || idle())) return;
    for (const resolve of flushed) resolve();
    flushed.clear();
  };

  function next() {
    if (writing !== null || retryTimer !== null || gone) return;
    if (head === queue.length) {
      settle();
      return;
    }
    // One write per batch of lines: up to 64 KiB or whatever is queued.
    let bytes = 0;
    let end = head;
    while (end < queue.length && (end === head || bytes + queue[end]!.length <= 65_536)) {
      bytes += queue[end]!.length;
      end += 1;
    }
    const lines = queue.slice(head, end);
    const n = end - head;
    head = end;
    // Drop the written lines from the array now and then, not on every batch (that is quadratic).
    if (head === queue.length) {
      queue = [];
      head = 0;
    } else if (head > 4096 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
    queuedBytes -= bytes;
    // A write the disk cut short left half a line: end it, so the next line stands on its own.
    const prefix = torn ? "\n" : "";
    torn = false;
    writing = { data: Buffer.from(prefix + lines.join("")), lines: n, written: 0 };
    writeSome();
  }

  function writeSome() {
    const batch = writing!;
    fsWrite(fd, batch.data, 0, batch.data.length, null, (err, written) => {
      if (err) {
        writing = null;
        torn ||= batch.written > 0;
        drop(batch.lines);
        if (GONE.has(err.code ?? "")) {
          gone = true;
          drop(queue.length - head);
          queue = [];
          head = 0;
          queuedBytes = 0;
          settle();
          return;
        }
        // Disk full, quota, I/O error: try again later with what is queued then; the lines that
        // arrive meanwhile wait (up to the buffer's size) or are dropped.
        retryTimer = setTimeout(() => {
          retryTimer = null;
          next();
        }, retryMs);
        retryTimer.unref();
        settle();
        return;
      }
      if (written < batch.data.length) {
        batch.data = batch.data.subarray(written);
        batch.written += written;
        writeSome();
        return;
      }
      writing = null;
      if (droppedSinceReport > 0 && onRecovered) {
        const lost = droppedSinceReport;
        droppedSinceReport = 0;
        onRecovered(lost);
      }
      next();
    });
  }

  return {
    write(line) {
      if (gone || queuedBytes + line.length > maxBufferedBytes) {
        drop(1);
        return;
      }
      queue.push(line);
      queuedBytes += line.length;
      next();
    },
    get dropped() {
      return dropped;
    },
    get buffered() {
      return queuedBytes + (writing?.data.length ?? 0);
    },
    get gone() {
      return gone;
    },
    flush(timeoutMs) {
      if (gone || idle()) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(done, timeoutMs);
        function done() {
          clearTimeout(timer);
          flushed.delete(done);
          resolve();
        }
        flushed.add(done);
      });
    },
  };
}
