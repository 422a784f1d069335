import { once } from "node:events";
import net, { type AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred, waitFor } from "../helpers/wait-for.js";

// Every attempt below aims at a real socket listening on loopback (the "tripwire"). The injected
// resolver is the only fake: it stands in for DNS, the seam the outbound policy checks at connect
// time. A refused attempt must fail with the right error and never open a connection.

type Address = { address: string; family: number };

/** A TCP server that counts the connections it accepts (and drops them). */
interface Tripwire {
  readonly port: number;
  readonly connections: number;
  close(): Promise<void>;
}

async function startTripwire(host = "127.0.0.1", port = 0): Promise<Tripwire> {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  server.listen(port, host);
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return connections;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A resolver that answers from a table (names not in it do not exist) and logs what it was asked. */
function fakeDns(table: Record<string, string[]>) {
  const asked: string[] = [];
  const resolve = async (hostname: string): Promise<Address[]> => {
    asked.push(hostname);
    return (table[hostname] ?? []).map((address) => ({ address, family: net.isIP(address) }));
  };
  return { resolve, asked };
}

let t: TestApp | undefined;
let tripwire: Tripwire;
let target: Target;

beforeEach(async () => {
  tripwire = await startTripwire();
  target = await startTarget();
});

afterEach(async () => {
  await t?.stop();
  t = undefined;
  await target.close();
  await tripwire.close();
});

const app = () => t!;
const attemptsOf = async (id: string) =>
  (await app().rest.get(`/jobs/${id}/attempts`)).json.attempts;

/** The job failed on its first attempt with destination_blocked, and was not retried. */
async function expectBlocked(id: string, error: RegExp) {
  const job = await app().waitForStatus(id, "succeeded", "failed");
  expect(job).toMatchObject({ status: "failed", attempt: 1, max_attempts: 3 });
  expect(job.last_error).toMatch(error);
  const attempts = await attemptsOf(id);
  expect(attempts).toHaveLength(1);
  expect(attempts[0]).toMatchObject({
    attempt: 1,
    outcome: "failed",
    response_status: null,
    error_code: "destination_blocked",
    retryable: false,
  });
  expect(attempts[0].error).toMatch(error);
  return attempts[0];
}

/** A job that would be retried quickly if the policy let it be. */
const retried = { max_attempts: 3, backoff_strategy: "fixed", backoff_seconds: 0.01 };

describe("IP literals and local names are refused at submit", () => {
  // [what, url from the tripwire's port, what the refusal says]
  const attempts: [string, (port: number) => string, RegExp][] = [
    ["loopback", (p) => `http://127.0.0.1:${p}/`, /127\.0\.0\.1 is not public: loopback/],
    ["loopback, https", (p) => `https://127.0.0.1:${p}/`, /loopback/],
    ["decimal", (p) => `http://2130706433:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["octal", (p) => `http://0177.0.0.1:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["octal, one number", (p) => `http://017700000001:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["hex octets", (p) => `http://0x7f.0x0.0x0.0x1:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["hex, one number", (p) => `http://0x7f000001:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["hex, short", (p) => `http://0x7f.1:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["short form", (p) => `http://127.1:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["three parts", (p) => `http://127.0.1:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["trailing dot", (p) => `http://127.0.0.1.:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["percent-encoded", (p) => `http://%31%32%37.0.0.1:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["full-width digits", (p) => `http://１２７.０.０.１:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["ideographic dots", (p) => `http://127。0。0。1:${p}/`, /127\.0\.0\.1 .*loopback/],
    ["userinfo in front", (p) => `http://api.example.com@127.0.0.1:${p}/`, /loopback/],
    ["IPv6 loopback", (p) => `http://[::1]:${p}/`, /::1 is not public: IPv6 loopback/],
    ["IPv6 loopback, long", (p) => `http://[0:0:0:0:0:0:0:1]:${p}/`, /IPv6 loopback/],
    ["IPv4-mapped", (p) => `http://[::ffff:127.0.0.1]:${p}/`, /IPv4-mapped loopback/],
    ["IPv4-mapped, hex", (p) => `http://[::ffff:7f00:1]:${p}/`, /IPv4-mapped loopback/],
    ["IPv4-compatible", (p) => `http://[::127.0.0.1]:${p}/`, /IPv4-compatible loopback/],
    ["NAT64", (p) => `http://[64:ff9b::7f00:1]:${p}/`, /NAT64 loopback/],
    ["6to4", (p) => `http://[2002:7f00:1::]:${p}/`, /6to4 loopback/],
    ["localhost", (p) => `http://localhost:${p}/`, /host localhost is loopback/],
    ["localhost, dotted", (p) => `http://LocalHost.:${p}/`, /host localhost is loopback/],
    ["*.localhost", (p) => `http://api.localhost:${p}/`, /host api\.localhost is loopback/],
    ["0.0.0.0", (p) => `http://0.0.0.0:${p}/`, /this network/],
    ["0", (p) => `http://0:${p}/`, /0\.0\.0\.0 .*this network/],
    ["unspecified IPv6", (p) => `http://[::]:${p}/`, /unspecified/],
    ["metadata", () => "http://169.254.169.254/latest/meta-data/", /cloud metadata/],
    ["metadata, decimal", () => "http://2852039166/latest/meta-data/", /cloud metadata/],
    ["metadata, hex", () => "http://0xa9.0xfe.0xa9.0xfe/", /cloud metadata/],
    ["metadata, short", () => "http://169.254.43518/", /cloud metadata/],
    ["metadata, mapped", () => "http://[::ffff:169.254.169.254]/", /IPv4-mapped link-local/],
    ["metadata, IPv6", () => "http://[fd00:ec2::254]/latest/meta-data/", /unique local/],
    ["10/8", () => "http://10.0.0.1/", /private \(10\.0\.0\.0\/8\)/],
    ["10/8, octal", () => "http://012.0.0.1/", /10\.0\.0\.1 .*private/],
    ["172.16/12", () => "http://172.16.0.1/", /private \(172\.16\.0\.0\/12\)/],
    ["172.16/12, hex", () => "http://0xac1f0001/", /172\.31\.0\.1 .*private/],
    ["192.168/16", () => "http://192.168.1.1/", /private \(192\.168\.0\.0\/16\)/],
    ["192.168/16, decimal", () => "http://3232235777/", /192\.168\.1\.1 .*private/],
    ["CGNAT", () => "http://100.64.0.1/", /CGNAT/],
    ["multicast", () => "http://224.0.0.1/", /multicast/],
    ["broadcast", () => "http://255.255.255.255/", /broadcast/],
    ["broadcast, decimal", () => "http://4294967295/", /broadcast/],
    ["unique local", () => "http://[fc00::1]/", /unique local/],
    ["IPv6 link-local", () => "http://[fe80::1]/", /link-local \(fe80::\/10\)/],
    ["IPv6 multicast", () => "http://[ff02::1]/", /multicast/],
  ];

  it.each(attempts)("refuses %s with 400 naming url", async (_what, url, reason) => {
    t = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: "" });
    const res = await app().rest.post("/jobs", { url: url(tripwire.port), ...retried });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: "invalid_argument", field: "url" });
    expect(res.json.message).toMatch(reason);
    expect((await app().rest.get("/jobs")).json.jobs).toEqual([]);
    expect(tripwire.connections).toBe(0);
  });

  it.each([
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_x",
    "ftp://example.com/file",
    "ws://example.com/socket",
    "data:text/plain,hi",
    "javascript:alert(1)",
  ])("refuses the scheme of %s: only http and https", async (url) => {
    t = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: "" });
    const res = await app().rest.post("/jobs", { url });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: "invalid_argument", field: "url" });
    expect(res.json.message).toMatch(/use http or https/);
  });

  it("refuses a batch that carries one, naming the job, and stores none of it", async () => {
    t = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: "" });
    const res = await app().rest.post("/jobs:batch", {
      jobs: [{ url: "https://example.com/" }, { url: `http://0x7f.1:${tripwire.port}/` }],
    });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: "invalid_argument", field: "jobs[1].url" });
    expect((await app().rest.get("/jobs")).json.jobs).toEqual([]);
  });
});

describe("host names are checked on the resolved address, at connect time", () => {
  it.each([
    ["loopback", ["127.0.0.1"], /loopback/],
    ["loopback, elsewhere in 127/8", ["127.53.0.1"], /loopback/],
    ["10/8", ["10.0.0.1"], /private \(10/],
    ["172.16/12", ["172.16.5.4"], /private \(172\.16/],
    ["192.168/16", ["192.168.1.1"], /private \(192\.168/],
    ["cloud metadata", ["169.254.169.254"], /cloud metadata/],
    ["CGNAT", ["100.64.0.1"], /CGNAT/],
    ["0.0.0.0", ["0.0.0.0"], /this network/],
    ["multicast", ["224.0.0.251"], /multicast/],
    ["broadcast", ["255.255.255.255"], /broadcast/],
    ["IPv6 loopback", ["::1"], /IPv6 loopback/],
    ["IPv6 metadata", ["fd00:ec2::254"], /unique local/],
    ["IPv6 link-local", ["fe80::1"], /link-local \(fe80/],
    ["IPv4-mapped loopback", ["::ffff:127.0.0.1"], /IPv4-mapped loopback/],
    ["a public and a private address", ["93.184.216.34", "127.0.0.1"], /127\.0\.0\.1.*loopback/],
  ])(
    "refuses a name resolving to %s: destination_blocked, attempt 1 only, no connection",
    async (_what, addresses, reason) => {
      const dns = fakeDns({ "service.example.com": addresses });
      t = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: "" }, { resolve: dns.resolve });
      // A name passes submit: only the answer at connect time can say where it leads.
      const id = await app().enqueue({
        url: `http://service.example.com:${tripwire.port}/`,
        ...retried,
      });
      await expectBlocked(id, /^host service\.example\.com resolves to /);
      expect((await attemptsOf(id))[0].error).toMatch(reason);
      expect(dns.asked).toEqual(["service.example.com"]);
      expect(tripwire.connections).toBe(0);
    },
  );

  it("accepts a name at submit without resolving it, and refuses what it resolves to when connecting", async () => {
    const answer = deferred();
    const asked: string[] = [];
    const resolve = async (hostname: string): Promise<Address[]> => {
      asked.push(hostname);
      await answer.promise;
      return [{ address: "127.0.0.1", family: 4 }];
    };
    t = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: "" }, { resolve });
    // Were the submit to resolve the name, this would hang: the resolver has not answered yet.
    const res = await app().rest.post("/jobs", {
      url: `http://rebind.example.com:${tripwire.port}/`,
      ...retried,
    });
    expect(res.status).toBe(200);
    const id = res.json.job_id as string;
    await waitFor(() => asked.length === 1, { what: "the worker to resolve the name" });
    expect((await app().rest.get(`/jobs/${id}`)).json.status).toBe("running");
    answer.resolve();
    await expectBlocked(id, /rebind\.example\.com resolves to 127\.0\.0\.1/);
    expect(tripwire.connections).toBe(0);
  });

  it("refuses a name whose answer turns private between attempts (DNS rebinding)", async () => {
    // 127.0.0.1 is allowed: it plays the public address. The same name later answers 127.0.0.2,
    // where a tripwire listens on the same port; that answer is not allowed.
    const rebound = await startTripwire("127.0.0.2", Number(new URL(target.url).port));
    try {
      const answers = [["127.0.0.1"], ["127.0.0.2"]];
      const asked: string[] = [];
      const resolve = async (hostname: string): Promise<Address[]> => {
        asked.push(hostname);
        const next = answers.length > 1 ? answers.shift()! : answers[0]!;
        return next.map((address) => ({ address, family: 4 }));
      };
      t = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: "127.0.0.1" }, { resolve });
      target.on("/flip", (_req, res) => {
        // Closing the connection makes the next attempt connect, and so resolve, again.
        res.writeHead(503, { connection: "close" }).end();
      });
      const id = await app().enqueue({
        url: `http://flip.example.com:${rebound.port}/flip`,
        ...retried,
      });
      const job = await app().waitForStatus(id, "succeeded", "failed");
      expect(job).toMatchObject({ status: "failed", attempt: 2 });
      const attempts = await attemptsOf(id);
      expect(
        attempts.map((a: any) => [a.attempt, a.response_status, a.error_code, a.retryable]),
      ).toEqual([
        [1, 503, "http_status", true],
        [2, null, "destination_blocked", false],
      ]);
      expect(attempts[1].error).toMatch(/flip\.example\.com resolves to 127\.0\.0\.2/);
      expect(target.received("/flip")).toHaveLength(1);
      expect(asked).toEqual(["flip.example.com", "flip.example.com"]);
      expect(rebound.connections).toBe(0);
    } finally {
      await rebound.close();
    }
  });
});

describe("redirects", () => {
  /** The redirector's name is allowed and resolves to the target on 127.0.0.1. */
  const redirectorEnv = { JOBQUEUE_ALLOWED_HOSTS: "redirector.test" };
  const redirectorDns = () =>
    fakeDns({ "redirector.test": ["127.0.0.1"], "intranet.example.com": ["10.0.0.1"] });

  beforeEach(() => {
    target.on("/r", (req, res) => {
      res.writeHead(Number(req.query.get("status") ?? 302), { location: req.query.get("to")! });
      res.end();
    });
  });

  it.each<[string, (port: number) => string, number, RegExp]>([
    ["127.0.0.1", (p) => `http://127.0.0.1:${p}/`, 302, /127\.0\.0\.1 .*loopback/],
    ["127.0.0.1 in decimal", (p) => `http://2130706433:${p}/`, 301, /127\.0\.0\.1 .*loopback/],
    ["localhost", (p) => `http://localhost:${p}/`, 303, /host localhost is loopback/],
    ["::ffff:127.0.0.1", (p) => `http://[::ffff:127.0.0.1]:${p}/`, 307, /IPv4-mapped loopback/],
    ["::1", (p) => `http://[::1]:${p}/`, 308, /IPv6 loopback/],
    ["cloud metadata", () => "http://169.254.169.254/latest/meta-data/", 302, /cloud metadata/],
    ["cloud metadata, IPv6", () => "http://[fd00:ec2::254]/latest/meta-data/", 302, /unique local/],
    [
      "a name resolving to 10.0.0.1",
      (p) => `http://intranet.example.com:${p}/`,
      302,
      /intranet\.example\.com resolves to 10\.0\.0\.1/,
    ],
  ])(
    "refuses a redirect to %s at its hop, before any connection",
    async (_what, to, status, reason) => {
      t = await startTestApp(redirectorEnv, { resolve: redirectorDns().resolve });
      const id = await app().enqueue({
        url: `http://redirector.test:${new URL(target.url).port}/r`,
        params: { to: to(tripwire.port), status: String(status) },
        follow_redirects: true,
        ...retried,
      });
      await expectBlocked(id, reason);
      expect(target.received("/r")).toHaveLength(1);
      expect(tripwire.connections).toBe(0);
    },
  );

  it("does not follow a redirect unless the job asks: a 302 is a failed attempt", async () => {
    t = await startTestApp(redirectorEnv, { resolve: redirectorDns().resolve });
    const id = await app().enqueue({
      url: `http://redirector.test:${new URL(target.url).port}/r`,
      params: { to: `http://127.0.0.1:${tripwire.port}/` },
      ...retried,
    });
    const job = await app().waitForStatus(id, "succeeded", "failed");
    expect(job).toMatchObject({ status: "failed", attempt: 1, follow_redirects: false });
    const attempts = await attemptsOf(id);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({
      response_status: 302,
      error_code: "http_status",
      retryable: false,
    });
    expect(attempts[0].error).toMatch(/redirects are followed only with follow_redirects/);
    const { json: result } = await app().rest.get(`/jobs/${id}/result`);
    expect(result.response_status).toBe(302);
    expect(tripwire.connections).toBe(0);
  });

  it("stops after max_redirects hops with too_many_redirects, not retried", async () => {
    t = await startTestApp(redirectorEnv, { resolve: redirectorDns().resolve });
    target.on("/loop", (_req, res, n) => {
      res.writeHead(302, { location: `/loop?n=${n}` }).end();
    });
    const id = await app().enqueue({
      url: `http://redirector.test:${new URL(target.url).port}/loop`,
      follow_redirects: true,
      max_redirects: 2,
      ...retried,
    });
    const job = await app().waitForStatus(id, "succeeded", "failed");
    expect(job).toMatchObject({ status: "failed", attempt: 1 });
    const attempts = await attemptsOf(id);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({ error_code: "too_many_redirects", retryable: false });
    expect(attempts[0].error).toMatch(/more than 2 redirects/);
    // The first request and two followed hops.
    expect(target.received("/loop")).toHaveLength(3);
  });

  it("follows allowed hops, keeping secret headers within the origin and dropping them past it", async () => {
    t = await startTestApp(
      { JOBQUEUE_ALLOWED_HOSTS: "*.hop.test" },
      { resolve: fakeDns({ "a.hop.test": ["127.0.0.1"], "b.hop.test": ["127.0.0.1"] }).resolve },
    );
    const port = new URL(target.url).port;
    target.on("/start", (_req, res) => {
      res.writeHead(302, { location: "/same" }).end();
    });
    target.on("/same", (_req, res) => {
      res.writeHead(307, { location: `http://b.hop.test:${port}/other` }).end();
    });
    target.on("/other", (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" }).end("arrived");
    });
    const id = await app().enqueue({
      url: `http://a.hop.test:${port}/start`,
      headers: {
        Authorization: "Bearer t0ken",
        Cookie: "session=s3cret",
        "X-Api-Key": "k3y",
        "X-Signature": "sig",
        "X-Trace": "trace-1",
      },
      secret_headers: ["X-Signature"],
      follow_redirects: true,
    });
    const job = await app().waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("succeeded");
    expect((await app().rest.get(`/jobs/${id}/result`)).json.response_body).toBe("arrived");

    const secrets = {
      authorization: "Bearer t0ken",
      cookie: "session=s3cret",
      "x-api-key": "k3y",
      "x-signature": "sig",
    };
    for (const path of ["/start", "/same"]) {
      const req = await target.request(path);
      expect(req.headers.host).toBe(`a.hop.test:${port}`);
      expect(req.headers, path).toMatchObject({ ...secrets, "x-trace": "trace-1" });
    }
    const other = await target.request("/other");
    expect(other.headers.host).toBe(`b.hop.test:${port}`);
    expect(other.headers["x-trace"]).toBe("trace-1");
    for (const name of Object.keys(secrets)) expect(other.headers[name], name).toBeUndefined();
  });
});

describe("JOBQUEUE_ALLOWED_HOSTS and JOBQUEUE_DENIED_HOSTS", () => {
  const svcDns = () => fakeDns({ "api.svc.test": ["127.0.0.1"] });

  it.each<[string, string, (port: string) => string]>([
    ["by IP", "127.0.0.1", (p) => `http://127.0.0.1:${p}/ok`],
    ["by IP, whatever the spelling", "127.0.0.1", (p) => `http://0x7f.1:${p}/ok`],
    ["by CIDR", "127.0.0.0/8", (p) => `http://127.0.0.1:${p}/ok`],
    ["by CIDR, short form", "127.0.0.0/8", (p) => `http://127.1:${p}/ok`],
    ["a name, exactly", "api.svc.test", (p) => `http://api.svc.test:${p}/ok`],
    ["a name, by *.wildcard", "*.svc.test", (p) => `http://api.svc.test:${p}/ok`],
  ])("lets the loopback target be called when allowed %s", async (_what, allowed, url) => {
    t = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: allowed }, { resolve: svcDns().resolve });
    const id = await app().enqueue({ url: url(new URL(target.url).port), ...retried });
    const job = await app().waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("succeeded");
    expect(target.received("/ok")).toHaveLength(1);
  });

  it("refuses the same target when nothing allows it", async () => {
    t = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: "" }, { resolve: svcDns().resolve });
    const port = new URL(target.url).port;
    const literal = await app().rest.post("/jobs", { url: `http://127.0.0.1:${port}/ok` });
    expect(literal.status).toBe(400);
    expect(literal.json.field).toBe("url");
    const id = await app().enqueue({ url: `http://api.svc.test:${port}/ok`, ...retried });
    await expectBlocked(id, /api\.svc\.test resolves to 127\.0\.0\.1/);
    expect(target.requests).toHaveLength(0);
  });

  it("refuses a denied name even when it is allowed, and in any spelling of it", async () => {
    t = await startTestApp(
      { JOBQUEUE_ALLOWED_HOSTS: "*.example.com", JOBQUEUE_DENIED_HOSTS: "api.example.com" },
      { resolve: fakeDns({ "api.example.com": ["93.184.216.34"] }).resolve },
    );
    for (const url of [
      "https://api.example.com/v1",
      "http://API.Example.com:8080/",
      "https://api.example.com./v1",
    ]) {
      const res = await app().rest.post("/jobs", { url });
      expect(res.status, url).toBe(400);
      expect(res.json).toMatchObject({ code: "invalid_argument", field: "url" });
      expect(res.json.message).toBe("url: host api.example.com is denied (JOBQUEUE_DENIED_HOSTS)");
    }
    expect((await app().rest.get("/jobs")).json.jobs).toEqual([]);
  });

  it("refuses a denied IP inside an allowed CIDR, in any spelling", async () => {
    t = await startTestApp({
      JOBQUEUE_ALLOWED_HOSTS: "127.0.0.0/8",
      JOBQUEUE_DENIED_HOSTS: "127.0.0.1",
    });
    for (const host of ["127.0.0.1", "2130706433", "127.1", "[::ffff:127.0.0.1]"]) {
      const res = await app().rest.post("/jobs", { url: `http://${host}:${tripwire.port}/` });
      expect(res.status, host).toBe(400);
      expect(res.json.field).toBe("url");
      expect(res.json.message).toMatch(/is denied \(JOBQUEUE_DENIED_HOSTS\)/);
    }
    expect(tripwire.connections).toBe(0);
  });

  it("refuses at connect time an allowed name that resolves to a denied address", async () => {
    t = await startTestApp(
      { JOBQUEUE_ALLOWED_HOSTS: "*.svc.test", JOBQUEUE_DENIED_HOSTS: "127.0.0.1" },
      { resolve: svcDns().resolve },
    );
    const id = await app().enqueue({ url: `http://api.svc.test:${tripwire.port}/`, ...retried });
    await expectBlocked(id, /api\.svc\.test resolves to 127\.0\.0\.1, which is denied/);
    expect(tripwire.connections).toBe(0);
  });
});

describe("headers a job may not set", () => {
  it.each([
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Upgrade",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Expect",
    "host",
    "CONTENT-LENGTH",
  ])("refuses %s with 400 naming headers.<name>", async (name) => {
    t = await startTestApp();
    const res = await app().rest.post("/jobs", {
      url: `${target.url}/ok`,
      headers: { [name]: name.toLowerCase() === "host" ? "169.254.169.254" : "0" },
    });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: "invalid_argument", field: `headers.${name}` });
    expect((await app().rest.get("/jobs")).json.jobs).toEqual([]);
  });

  it.each([
    ["CR LF", "a\r\nX-Injected: 1"],
    ["LF", "a\nX-Injected: 1"],
    ["CR", "a\rb"],
    ["NUL", "a\u0000b"],
  ])("refuses %s in a header value", async (_what, value) => {
    t = await startTestApp();
    const res = await app().rest.post("/jobs", {
      url: `${target.url}/ok`,
      headers: { "X-Trace": value },
    });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: "invalid_argument", field: "headers.X-Trace" });
    expect(res.json.message).toMatch(/control characters/);
  });

  it.each(["X-Trace\r\nX-Injected", "X-Trace\n", "X Trace", "X-Trace:"])(
    "refuses the header name %j",
    async (name) => {
      t = await startTestApp();
      const res = await app().rest.post("/jobs", {
        url: `${target.url}/ok`,
        headers: { [name]: "v" },
      });
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject({ code: "invalid_argument", field: "headers" });
      expect(res.json.message).toMatch(/not a valid header name/);
    },
  );
});
