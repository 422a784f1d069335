import http from "node:http";
import https from "node:https";
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  fromBinary,
  isMessage,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport, type UnaryResponse } from "@connectrpc/connect";
import {
  codeFromHttpStatus,
  errorFromJsonBytes,
  protocolVersion,
  trailerDemux,
} from "@connectrpc/connect/protocol-connect";

/**
 * A Connect transport whose unary calls are plain HTTP/1.1 requests: the message in binary
 * protobuf, one keep-alive connection per call in flight, one write per request. Streaming calls
 * (WatchJob) go to `streams`.
 *
 * Connect's own Node.js transport wraps every call in linked abort controllers, async iterables
 * and an error made on every close, and sends the body chunked in a write of its own; with it, an
 * EnqueueJob cost this client ~440 µs of CPU over HTTP/1.1 (~320 over HTTP/2) and the server
 * ~250, against ~120 and ~120 as a plain request (128 in flight, `node --import tsx
 * bench/client-cost.ts` in the repository). The wire is the same Connect protocol.
 */
export function createUnaryHttpTransport(options: {
  baseUrl: string;
  /** Headers sent on every call (the API key). */
  headers: Record<string, string>;
  /** Where streaming calls go. */
  streams: Transport;
}): Transport {
  const base = new URL(options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`);
  const secure = base.protocol === "https:";
  if (!secure && base.protocol !== "http:") {
    throw new Error(`baseUrl must be an http: or https: URL (got ${options.baseUrl})`);
  }
  const agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  const request = secure ? https.request : http.request;
  const fixed: Record<string, string> = {
    ...options.headers,
    "content-type": "application/proto",
    "connect-protocol-version": String(protocolVersion),
  };

  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: Parameters<Transport["unary"]>[3],
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      if (signal?.aborted) throw ConnectError.from(signal.reason, Code.Canceled);
      const message = isMessage(input, method.input) ? input : create(method.input, input);
      const body = toBinary(method.input, message);
      const headers: Record<string, string | number> = { ...fixed, "content-length": body.length };
      if (header !== undefined) {
        for (const [k, v] of new Headers(header)) headers[k] = v;
      }
      const deadline = timeoutMs !== undefined && timeoutMs > 0 ? timeoutMs : undefined;
      if (deadline !== undefined) headers["connect-timeout-ms"] = String(deadline);
      const path = `${base.pathname}${method.parent.typeName}/${method.name}`;

      const res = await new Promise<{ status: number; header: Headers; body: Buffer }>(
        (resolve, reject) => {
          let timer: NodeJS.Timeout | undefined;
          const req = request(
            {
              agent,
              protocol: base.protocol,
              hostname: base.hostname,
              port: base.port,
              path,
              method: "POST",
              headers,
            },
            (incoming) => {
              const chunks: Buffer[] = [];
              incoming.on("data", (c: Buffer) => chunks.push(c));
              incoming.on("error", fail);
              incoming.on("end", () => {
                done();
                const h = new Headers();
                const raw = incoming.rawHeaders;
                for (let i = 0; i < raw.length; i += 2) h.append(raw[i]!, raw[i + 1]!);
                resolve({
                  status: incoming.statusCode ?? 0,
                  header: h,
                  body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
                });
              });
            },
          );
          const onAbort = () => req.destroy(ConnectError.from(signal!.reason, Code.Canceled));
          function done() {
            if (timer) clearTimeout(timer);
            signal?.removeEventListener("abort", onAbort);
          }
          function fail(err: unknown) {
            done();
            reject(err instanceof ConnectError ? err : transportError(err));
          }
          req.on("error", fail);
          signal?.addEventListener("abort", onAbort, { once: true });
          if (deadline !== undefined) {
            timer = setTimeout(
              () =>
                req.destroy(
                  new ConnectError(
                    `the call took longer than ${deadline} ms`,
                    Code.DeadlineExceeded,
                  ),
                ),
              deadline,
            );
          }
          req.end(body);
        },
      );

      const [resHeader, trailer] = trailerDemux(res.header);
      const type = res.header.get("content-type") ?? "";
      if (res.status !== 200) {
        const fallback = new ConnectError(`HTTP ${res.status}`, codeFromHttpStatus(res.status));
        if (!/^application\/json\b/i.test(type)) throw fallback;
        const metadata = new Headers(resHeader);
        for (const [k, v] of trailer) metadata.append(k, v);
        throw errorFromJsonBytes(res.body, metadata, fallback);
      }
      if (!/^application\/proto\b/i.test(type)) {
        throw new ConnectError(`unsupported content type ${type}`, Code.Internal, res.header);
      }
      let output: UnaryResponse<I, O>["message"];
      try {
        // A copy as a plain Uint8Array: bytes fields are views of it (of a Buffer they would be
        // Buffers, and of the socket's read they would hold on to it).
        output = fromBinary(method.output, new Uint8Array(res.body));
      } catch (err) {
        throw new ConnectError(
          `the server's answer does not parse: ${(err as Error).message}`,
          Code.Internal,
        );
      }
      return {
        stream: false,
        service: method.parent,
        method,
        header: resHeader,
        message: output,
        trailer,
      };
    },
    stream: (...args) => options.streams.stream(...args),
  };
}

/** A failure below HTTP (refused, reset, unresolvable): the server cannot be reached now. */
function transportError(err: unknown): ConnectError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const message = (err as Error | null)?.message ?? String(err);
  // An answer that is not HTTP (llhttp's HPE_ codes) is the server's fault, not the network's.
  if (code?.startsWith("HPE_")) {
    return new ConnectError(
      `the server's answer is not HTTP: ${message}`,
      Code.Internal,
      undefined,
      undefined,
      err,
    );
  }
  return new ConnectError(
    `the server cannot be reached: ${message}`,
    code === undefined ? Code.Unknown : Code.Unavailable,
    undefined,
    undefined,
    err,
  );
}
