import { create, type DescMethod } from "@bufbuild/protobuf";
import type {
  ContextValues,
  HandlerContext,
  Interceptor,
  MethodImplSpec,
  StreamRequest,
  StreamResponse,
} from "@connectrpc/connect";

export type StreamCall = (req: StreamRequest) => Promise<StreamResponse>;

/**
 * A server-streaming method's handler behind the interceptors, for the transports served outside
 * the Connect router (Server-Sent Events and WebSocket): the same chain, so authentication, roles,
 * errors and the access log are the same as on gRPC and Connect. The interceptors run when the
 * call is made (a refused call fails there, before anything is sent); the handler runs as its
 * messages are read.
 */
export function composeServerStream(
  spec: Extract<MethodImplSpec, { kind: "server_streaming" }>,
  interceptors: Interceptor[],
  protocolName: string,
): StreamCall {
  const method = spec.method;
  let next = (async (req: StreamRequest): Promise<StreamResponse> => {
    const header = new Headers();
    const trailer = new Headers();
    const ctx: HandlerContext = {
      method,
      service: req.service,
      requestMethod: req.requestMethod,
      protocolName,
      url: req.url,
      signal: req.signal,
      timeoutMs: () => undefined,
      requestHeader: req.header,
      responseHeader: header,
      responseTrailer: trailer,
      values: req.contextValues,
    };
    let input: unknown;
    for await (const m of req.message) input = m;
    const output = spec.impl(input as never, ctx) as AsyncIterable<unknown>;
    return {
      stream: true,
      service: method.parent,
      method,
      header,
      trailer,
      message: (async function* () {
        for await (const m of output) yield create(method.output, m as never);
      })(),
    } as StreamResponse;
  }) as Parameters<Interceptor>[0];
  for (const interceptor of [...interceptors].reverse()) next = interceptor(next);
  return next as StreamCall;
}

/** A streaming call as the interceptors see it: one input message, the caller's headers. */
export function streamRequest(params: {
  method: DescMethod;
  input: unknown;
  url: string;
  header: Headers;
  contextValues: ContextValues;
  signal: AbortSignal;
}): StreamRequest {
  const { method, input } = params;
  return {
    stream: true,
    service: method.parent,
    method: method as StreamRequest["method"],
    requestMethod: "GET",
    url: params.url,
    header: params.header,
    contextValues: params.contextValues,
    signal: params.signal,
    message: (async function* () {
      yield input;
    })() as StreamRequest["message"],
  };
}
