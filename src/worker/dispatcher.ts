import { Agent, type Dispatcher } from "undici";
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

  /**
   * Makes the job's request, following redirects if the job asks (each hop checked by the
   * outbound policy), and reads the final response's body up to the cap.
   */
  async function send(
    job: Job,
    secretHeaders: Record<string, string>,
    signal: AbortSignal,
    onProgress: ((progress: Progress) => void) | undefined,
  ): Promise<Exchange> {
    let url = buildUrl(job);
    let method: string = job.method;
    let body = requestBodyBytes(job.body);
    let headers = buildHeaders(job, secretHeaders, options.userAgent);
    const follows = (status: number, head: ResponseHeaders) =>
      job.followRedirects && REDIRECTS.has(status) && typeof head.location === "string";
    for (let hop = 0; ; hop++) {
      const refusal = policy.refuse(url);
      if (refusal) throw new Refused("destination_blocked", refusal);
      const res = await exchange(
        agent,
        {
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: method as Dispatcher.HttpMethod,
          headers,
          body,
          ...(onProgress ? { [ON_CONNECTED]: () => onProgress({ phase: "connected" }) } : {}),
        },
        signal,
        {
          max: options.resultMaxBytes,
          follows,
          onHead: onProgress && ((status) => onProgress({ phase: "headers", status })),
          onBytes: onProgress && ((status, bytes) => onProgress({ phase: "body", status, bytes })),
        },
      );
      if (!follows(res.status, res.headers)) return res;
      const location = res.headers.location as string;
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
        (res.status === 303 && method !== "GET" && method !== "HEAD") ||
        ((res.status === 301 || res.status === 302) && method === "POST");
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
        return {
          kind: "response",
          status: res.status,
          headers: flattenHeaders(res.headers),
          body: res.body,
          truncated: res.truncated,
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

type ResponseHeaders = Record<string, string | string[] | undefined>;

/** One request's answer: its status and headers, and its body as read (see {@link exchange}). */
interface Exchange {
  status: number;
  headers: ResponseHeaders;
  body: Uint8Array;
  truncated: boolean;
}

interface ReadOptions {
  /** The body is read up to this many bytes; the rest is not read and the connection is closed. */
  max: number;
  /** Whether the response is a redirect that will be followed: its body is then not read. */
  follows: (status: number, headers: ResponseHeaders) => boolean;
  /** Told of the head of a response whose body is read. */
  onHead?: (status: number) => void;
  /** Told of the bytes read so far, at each chunk. */
  onBytes?: (status: number, bytes: number) => void;
}

/**
 * Makes one request with undici's dispatcher API and collects its answer. The handler gets the
 * response's head and body chunks as calls: `request()` wraps every response in a Readable stream
 * that the caller then reads through an async iterator, which cost about as much CPU again as the
 * call itself (a loop of 30,000 calls to a local target: 84-101 µs per call that way, 46-52 µs
 * this way). Past `max` bytes, and for a redirect being followed, the rest of the response is not
 * read and its connection is closed, so memory stays bounded whatever the target sends.
 *
 * An abort of `signal` settles the promise at once, with the signal's reason; a request already on
 * a connection is aborted there too, one still connecting is aborted once it has connected.
 */
function exchange(
  dispatcher: Dispatcher,
  request: Dispatcher.DispatchOptions,
  signal: AbortSignal,
  read: ReadOptions,
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | null = null;
    let settled = false;
    let status = 0;
    let headers: ResponseHeaders = {};
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = () => {
      settled = true;
      signal.removeEventListener("abort", onAbort);
    };
    const done = (truncated: boolean) => {
      if (settled) return;
      settle();
      resolve({ status, headers, body: Buffer.concat(chunks, size), truncated });
    };
    const fail = (err: unknown) => {
      if (settled) return;
      settle();
      reject(err);
    };
    function onAbort() {
      fail(signal.reason);
      controller?.abort(signal.reason);
    }
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (settled) c.abort(signal.reason);
      },
      onResponseStart(c, statusCode, head) {
        status = statusCode;
        headers = head;
        if (read.follows(statusCode, head)) {
          done(false);
          c.abort(new Error("redirect followed"));
          return;
        }
        read.onHead?.(statusCode);
      },
      onResponseData(c, chunk) {
        if (settled) return;
        if (size + chunk.byteLength > read.max) {
          chunks.push(chunk.subarray(0, read.max - size));
          size = read.max;
          done(true);
          c.abort(new Error("response body over the cap"));
          return;
        }
        chunks.push(chunk);
        size += chunk.byteLength;
        read.onBytes?.(status, size);
      },
      onResponseEnd() {
        done(false);
      },
      onResponseError(_c, err) {
        fail(err);
      },
    };
    try {
      dispatcher.dispatch(request, handler);
    } catch (err) {
      fail(err);
    }
  });
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
