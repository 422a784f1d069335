import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { JobQueueService } from "../../../gen/jobqueue/v1/job_queue_service_pb.js";
import { QueueService } from "../../../gen/jobqueue/v1/queue_service_pb.js";
import { ScheduleService } from "../../../gen/jobqueue/v1/schedule_service_pb.js";

/**
 * The public API, as the generated Connect-Web clients call it: JobQueueService's methods, and
 * QueueService's under `queues`, ScheduleService's under `schedules`.
 */
export type Api = Client<typeof JobQueueService> & {
  queues: Client<typeof QueueService>;
  schedules: Client<typeof ScheduleService>;
};

/**
 * A client of the server that served the page (same origin: no CORS), sending the API key of the
 * session, if any, as a bearer token. `onUnauthenticated` hears of every call the server refused
 * for want of a valid key (the key was revoked, or the session was never signed in).
 */
export function createApi(options: {
  apiKey: () => string | null;
  onUnauthenticated: () => void;
}): Api {
  const auth: Interceptor = (next) => async (req) => {
    const key = options.apiKey();
    if (key) req.header.set("authorization", `Bearer ${key}`);
    try {
      return await next(req);
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unauthenticated) options.onUnauthenticated();
      throw err;
    }
  };
  const transport = createConnectTransport({
    baseUrl: window.location.origin,
    useBinaryFormat: true,
    interceptors: [auth],
  });
  return Object.assign(createClient(JobQueueService, transport), {
    queues: createClient(QueueService, transport),
    schedules: createClient(ScheduleService, transport),
  });
}

/** A message fit for a person: the server's own, without the "[code]" prefix connect adds. */
export function errorText(err: unknown): string {
  const cerr = ConnectError.from(err);
  if (cerr.code === Code.Unavailable && /fetch|network/i.test(cerr.rawMessage)) {
    return "The server cannot be reached.";
  }
  return cerr.rawMessage || Code[cerr.code];
}
