import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { QueueService } from "../../gen/jobqueue/v1/queue_service_pb.js";
import { CliError, EXIT } from "./exit-codes.js";

export type Api = Client<typeof JobQueueService>;
export type QueuesApi = Client<typeof QueueService>;

/** The clients of both services, over one transport. */
export interface Apis {
  jobs: Api;
  queues: QueuesApi;
}

export const DEFAULT_SERVER = "http://127.0.0.1:8080";

/**
 * A Connect client of the public API (binary protobuf over HTTP/1.1, so any proxy passes it),
 * sending the API key as a bearer token. The CLI calls nothing the API does not offer.
 */
export function createApi(server: string, apiKey: string | undefined): Apis {
  let baseUrl: URL;
  try {
    baseUrl = new URL(server);
  } catch {
    throw new CliError(`--server: ${JSON.stringify(server)} is not a URL`, EXIT.usage);
  }
  if (baseUrl.protocol !== "http:" && baseUrl.protocol !== "https:") {
    throw new CliError(`--server: use an http:// or https:// URL`, EXIT.usage);
  }
  const auth: Interceptor = (next) => (req) => {
    if (apiKey) req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: baseUrl.href.replace(/\/$/, ""),
    httpVersion: "1.1",
    useBinaryFormat: true,
    interceptors: [auth],
    defaultTimeoutMs: 60_000,
  });
  return {
    jobs: createClient(JobQueueService, transport),
    queues: createClient(QueueService, transport),
  };
}
