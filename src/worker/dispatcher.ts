import { Agent, type Dispatcher, request } from "undici";
import type { CallResult } from "../job/retry-policy.js";
import type { Job, RequestBody } from "../job/types.js";

export interface HttpDispatcherOptions {
  /** The response body is read up to this many bytes, then the stream is cut. */
  resultMaxBytes: number;
  /** Sent when the job sets no User-Agent. */
  userAgent: string;
  /**
   * Connection options for the keep-alive pool (e.g. an outbound `lookup` that vets addresses at
   * connect time). Defaults suit calling arbitrary APIs.
   */
  connect?: Agent.Options["connect"];
}

/** Makes the HTTP call of an attempt. */
export interface HttpDispatcher {
  /**
   * Calls the job's URL and reads the response body up to the cap. `timeoutMs` bounds the whole
   * call (connect, headers, body). Aborting `signal` stops the call at once and closes its
   * connection. Never throws: every ending is a {@link CallResult}.
   */
  call(job: Job, signal: AbortSignal): Promise<CallResult>;
  /** Closes the keep-alive pools. */
  close(): Promise<void>;
}

const TIMEOUT = Symbol("timeout");

export function createHttpDispatcher(options: HttpDispatcherOptions): HttpDispatcher {
  // One keep-alive pool per origin. The job's own timeout bounds each call, so undici's header and
  // body timers are off.
  const agent = new Agent({
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 4_000,
    connect: options.connect,
  });

  return {
    async call(job, signal) {
      const started = performance.now();
      const elapsed = () => Math.round(performance.now() - started);
      const ac = new AbortController();
      const onAbort = () => ac.abort(signal.reason);
      if (signal.aborted) return { kind: "aborted", durationMs: 0 };
      signal.addEventListener("abort", onAbort, { once: true });
      const timer = setTimeout(() => ac.abort(TIMEOUT), job.timeoutMs);
      try {
        const res = await request(buildUrl(job), {
          method: job.method,
          headers: buildHeaders(job, options.userAgent),
          body: encodeBody(job.body),
          signal: ac.signal,
          dispatcher: agent,
        });
        const { body, truncated } = await readCapped(res.body, options.resultMaxBytes);
        return {
          kind: "response",
          status: res.statusCode,
          headers: flattenHeaders(res.headers),
          body,
          truncated,
          durationMs: elapsed(),
        };
      } catch (err) {
        if (ac.signal.reason === TIMEOUT) {
          return {
            kind: "error",
            code: "timeout",
            message: `timed out after ${job.timeoutMs / 1000}s`,
            durationMs: elapsed(),
          };
        }
        if (signal.aborted) return { kind: "aborted", durationMs: elapsed() };
        return { kind: "error", code: "network", message: describe(err), durationMs: elapsed() };
      } finally {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
      }
    },
    async close() {
      await agent.close();
    },
  };
}

/**
 * Reads a body up to `max` bytes. Past the cap the stream is destroyed, which closes the
 * connection: memory stays bounded whatever the target sends.
 */
async function readCapped(
  body: Dispatcher.ResponseData["body"],
  max: number,
): Promise<{ body: Uint8Array; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (size + chunk.byteLength > max) {
      chunks.push(chunk.subarray(0, max - size));
      size = max;
      body.destroy();
      return { body: Buffer.concat(chunks, size), truncated: true };
    }
    chunks.push(chunk);
    size += chunk.byteLength;
  }
  return { body: Buffer.concat(chunks, size), truncated: false };
}

function buildUrl(job: Job): URL {
  const url = new URL(job.url);
  for (const [name, value] of Object.entries(job.params)) url.searchParams.append(name, value);
  return url;
}

function buildHeaders(job: Job, userAgent: string): Record<string, string> {
  const headers: Record<string, string> = { ...job.headers };
  const has = (name: string) => Object.keys(headers).some((h) => h.toLowerCase() === name);
  if (!has("user-agent")) headers["user-agent"] = userAgent;
  if (job.body && !has("content-type")) {
    headers["content-type"] =
      job.body.kind === "bytes"
        ? "application/octet-stream"
        : typeof job.body.value === "string"
          ? "text/plain; charset=utf-8"
          : "application/json";
  }
  return headers;
}

function encodeBody(body: RequestBody | null): Buffer | undefined {
  if (body === null) return undefined;
  if (body.kind === "bytes") return Buffer.from(body.bytes);
  return Buffer.from(typeof body.value === "string" ? body.value : JSON.stringify(body.value));
}

function flattenHeaders(headers: Record<string, string | string[] | undefined>) {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

/** A one-line description of a network error, without a stack. */
function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : "";
    return `${typeof code === "string" ? `${code}: ` : ""}${err.message}${cause}`;
  }
  return String(err);
}
