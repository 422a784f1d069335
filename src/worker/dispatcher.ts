import { Agent, type Dispatcher, request } from "undici";
import type { Progress } from "../job/events.js";
import type { CallResult } from "../job/retry-policy.js";
import { requestBodyBytes } from "../job/signing.js";
import type { Job } from "../job/types.js";
import type { OutboundPolicy } from "./outbound-policy.js";

export interface HttpDispatcherOptions {
  /** The response body is read up to this many bytes, then the stream is cut. */
  resultMaxBytes: number;
  /** Sent when the job sets no User-Agent. */
  userAgent: string;
  /** Where calls may go: checked on every URL and, through DNS, on every new connection. */
  policy: OutboundPolicy;
}

/** Makes the HTTP call of an attempt. */
export interface HttpDispatcher {
  /**
   * Calls the job's URL (following redirects if the job asks, each hop checked by the outbound
   * policy) and reads the response body up to the cap. The job's timeout bounds the whole call.
   * Aborting `abort` (the caller's) stops the call at once and closes its connection; the call
   * also aborts it itself when the job's timeout passes (so one controller and one listener serve
   * both, per call). `secretHeaders` are the job's unsealed secret headers; they are not sent on
   * past a redirect to another origin. Never throws: every ending is a {@link CallResult}.
   */
  call(
    job: Job,
    secretHeaders: Record<string, string>,
    abort: AbortController,
    onProgress?: (progress: Progress) => void,
  ): Promise<CallResult>;
  /** Closes the keep-alive pools. */
  close(): Promise<void>;
}

const TIMEOUT = Symbol("timeout");

/** A request option naming what to call once the request has a connection (undici passes it on). */
const ON_CONNECTED = "jobqueueOnConnected";

/**
 * An undici interceptor that tells a request, through its {@link ON_CONNECTED} option, when it is
 * dispatched on a connection: a new one once connected (and TLS is up), a kept-alive one at once.
 */
const connectedHook: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
  const hook = (opts as unknown as Record<string, unknown>)[ON_CONNECTED];
  if (typeof hook !== "function") return dispatch(opts, handler);
  return dispatch(opts, new ConnectedHandler(handler, hook as () => void));
};

type Handler = Dispatcher.DispatchHandler;

/**
 * Passes every event on to `handler` (undici hands interceptors its controller-style interface),
 * telling `hook` once when the request starts on a connection. A plain class: a Proxy here cost a
 * trap and a bound function on every property undici reads, per request.
 */
class ConnectedHandler implements Handler {
  private hook: (() => void) | null;
  constructor(
    private readonly handler: Handler,
    hook: () => void,
  ) {
    this.hook = hook;
  }
  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    const hook = this.hook;
    this.hook = null;
    hook?.();
    this.handler.onRequestStart?.(controller, context);
  }
  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[]>,
    socket: import("node:stream").Duplex,
  ): void {
    this.handler.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[]>,
    statusMessage?: string,
  ): void {
    this.handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.handler.onResponseData?.(controller, chunk);
  }
  onResponseEnd(
    controller: Dispatcher.DispatchController,
    trailers: Record<string, string | string[]>,
  ): void {
    this.handler.onResponseEnd?.(controller, trailers);
  }
  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.handler.onResponseError?.(controller, error);
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

class Refused extends Error {
  constructor(
    readonly code: "destination_blocked" | "too_many_redirects",
    message: string,
  ) {
    super(message);
  }
}

export function createHttpDispatcher(options: HttpDispatcherOptions): HttpDispatcher {
  const { policy } = options;
  // One keep-alive pool per origin. The job's own timeout bounds each call, so undici's header and
  // body timers are off. Every new connection resolves through the outbound policy.
  const agent = new Agent({
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 4_000,
    connect: { lookup: policy.lookup },
  }).compose(connectedHook);

  async function send(
    job: Job,
    secretHeaders: Record<string, string>,
    signal: AbortSignal,
    onProgress: ((progress: Progress) => void) | undefined,
  ): Promise<Dispatcher.ResponseData> {
    let url = buildUrl(job);
    let method: string = job.method;
    let body = requestBodyBytes(job.body);
    let headers = buildHeaders(job, secretHeaders, options.userAgent);
    for (let hop = 0; ; hop++) {
      const refusal = policy.refuse(url);
      if (refusal) throw new Refused("destination_blocked", refusal);
      const res = await request(url, {
        method,
        headers,
        body,
        signal,
        dispatcher: agent,
        ...(onProgress ? { [ON_CONNECTED]: () => onProgress({ phase: "connected" }) } : {}),
      });
      const location = res.headers.location;
      if (!job.followRedirects || !REDIRECTS.has(res.statusCode) || typeof location !== "string") {
        return res;
      }
      await res.body.dump();
      if (hop >= job.maxRedirects) {
        throw new Refused("too_many_redirects", `more than ${job.maxRedirects} redirects`);
      }
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw new Refused(
          "destination_blocked",
          `redirect to an invalid URL ${JSON.stringify(location)}`,
        );
      }
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new Refused("destination_blocked", `redirect to a ${next.protocol} URL is refused`);
      }
      const toGet =
        (res.statusCode === 303 && method !== "GET" && method !== "HEAD") ||
        ((res.statusCode === 301 || res.statusCode === 302) && method === "POST");
      if (toGet) {
        method = "GET";
        body = undefined;
        headers = withoutHeaders(headers, ["content-type"]);
      }
      if (next.origin !== url.origin) {
        // Credentials were given for the first origin, not for wherever it points.
        headers = withoutHeaders(
          headers,
          Object.keys(secretHeaders).map((h) => h.toLowerCase()),
        );
      }
      url = next;
    }
  }

  return {
    async call(job, secretHeaders, abort, onProgress) {
      const started = performance.now();
      const elapsed = () => Math.round(performance.now() - started);
      const signal = abort.signal;
      if (signal.aborted) return { kind: "aborted", durationMs: 0 };
      const timer = setTimeout(() => abort.abort(TIMEOUT), job.timeoutMs);
      try {
        const res = await send(job, secretHeaders, signal, onProgress);
        onProgress?.({ phase: "headers", status: res.statusCode });
        const { body, truncated } = await readCapped(
          res.body,
          options.resultMaxBytes,
          onProgress && ((bytes) => onProgress({ phase: "body", status: res.statusCode, bytes })),
        );
        return {
          kind: "response",
          status: res.statusCode,
          headers: flattenHeaders(res.headers),
          body,
          truncated,
          durationMs: elapsed(),
        };
      } catch (err) {
        if (err instanceof Refused) {
          return { kind: "error", code: err.code, message: err.message, durationMs: elapsed() };
        }
        if (signal.reason === TIMEOUT) {
          return {
            kind: "error",
            code: "timeout",
            message: `timed out after ${job.timeoutMs / 1000}s`,
            durationMs: elapsed(),
          };
        }
        if (signal.aborted) return { kind: "aborted", durationMs: elapsed() };
        const blocked = findBlocked(err);
        if (blocked) {
          return {
            kind: "error",
            code: "destination_blocked",
            message: blocked,
            durationMs: elapsed(),
          };
        }
        return { kind: "error", code: "network", message: describe(err), durationMs: elapsed() };
      } finally {
        clearTimeout(timer);
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
  onBytes?: (bytes: number) => void,
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
    onBytes?.(size);
  }
  return { body: Buffer.concat(chunks, size), truncated: false };
}

function buildUrl(job: Job): URL {
  const url = new URL(job.url);
  for (const [name, value] of Object.entries(job.params)) url.searchParams.append(name, value);
  return url;
}

function buildHeaders(
  job: Job,
  secretHeaders: Record<string, string>,
  userAgent: string,
): Record<string, string> {
  const headers: Record<string, string> = { ...job.headers, ...secretHeaders };
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

function withoutHeaders(headers: Record<string, string>, names: string[]): Record<string, string> {
  const drop = new Set(names);
  return Object.fromEntries(Object.entries(headers).filter(([h]) => !drop.has(h.toLowerCase())));
}

function flattenHeaders(headers: Record<string, string | string[] | undefined>) {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

/** The message of a DestinationBlockedError anywhere in an error's cause chain. */
function findBlocked(err: unknown): string | null {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === "EDESTINATIONBLOCKED") return e.message;
  }
  return null;
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
