import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { type ApiKeyEntry, parseApiKeys } from "./auth/api-keys.js";
import type { InvalidArgumentError } from "./job/errors.js";
import { parseHostLimits } from "./job/rate-limits.js";
import { parseSigningSecrets } from "./job/signing.js";
import { BACKOFF_STRATEGIES, type BackoffStrategy } from "./job/types.js";
import { parseOrigin } from "./rpc/cors.js";
import { parseSecretKeys } from "./secrets/secret-keys.js";
import { parseHostPattern } from "./worker/outbound-policy.js";

/** Everything the process is told from outside, validated once, with units in the names. */
export interface Config {
  host: string;
  port: number;
  /** Where jobs are stored. */
  db: DbTarget;
  /** This node's id among several sharing one database. */
  nodeId: string;
  /** PostgreSQL connections at most per node. */
  dbPoolSize: number;
  /** Free space the disk of a SQLite database must have for the node to be ready. */
  minFreeDiskBytes: number;
  concurrency: number;
  pollIntervalMs: number;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  resultMaxBytes: number;
  maxBodyBytes: number;
  leaseMs: number;
  shutdownGraceMs: number;
  defaultMaxAttempts: number;
  defaultBackoffStrategy: BackoffStrategy;
  defaultBackoffBaseMs: number;
  backoffMaxMs: number;
  retryAfterMaxMs: number;
  /** null keeps finished jobs. */
  defaultTtlMs: number | null;
  cleanupIntervalMs: number;
  /** How long the event stream keeps an event (a watcher may resume from a cursor this old). */
  eventRetentionMs: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  accessLog: boolean;
  /** Who may read GET /metrics: anyone, callers with an API key, "auto" (as the API), or nobody. */
  metrics: "auto" | "open" | "keys" | "off";
  /** Where OpenTelemetry traces of the attempts go (OTLP/HTTP); null: no traces. */
  otlpTracesUrl: string | null;
  allowedHosts: string[];
  deniedHosts: string[];
  /** Secret-header keys, the sealing one first; null: use (or create) the key file. */
  secretKeys: Buffer[] | null;
  apiKeysFile: ApiKeyEntry[];
  apiKeys: ApiKeyEntry[];
  /** Signing secrets of jobs submitted without authentication. */
  signingSecrets: string[];
  /** The delivered JSON of a callback at most, in bytes. */
  callbackMaxBytes: number;
  /** Attempts of a callback delivery. */
  callbackMaxAttempts: number;
  authMode: "auto" | "keys" | "none";
  auditRetentionMs: number;
  auditRefusalsPerMinute: number;
  corsOrigins: string[];
  authFailuresPerMinute: number;
  hostLimits: ReturnType<typeof parseHostLimits>;
  maxRequestBytes: number;
  maxUrlLength: number;
  maxHeaders: number;
  maxHeaderBytes: number;
  maxTags: number;
  maxTagLength: number;
  maxPageSize: number;
  maxTtlMs: number;
  maxBatchSize: number;
  /** Derived: whether calls must carry an API key, and the keys. */
  auth: { enabled: boolean; keys: ApiKeyEntry[] };
}

/** One documented setting: its variable, default, meaning and how to read it. */
interface Setting<K extends keyof Config> {
  env: string;
  key: K;
  default: string;
  doc: string;
  parse: (raw: string) => Config[K];
  /** The value is never echoed in error messages. */
  secret?: boolean;
  /** The README section that documents the setting. */
  section?: "security" | "limits";
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

class BadValue extends Error {}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

function int(min: number, max: number) {
  return (raw: string): number => {
    if (!/^-?\d+$/.test(raw.trim())) throw new BadValue(`must be an integer`);
    const n = Number(raw);
    if (n < min || n > max) throw new BadValue(`must be between ${min} and ${max}`);
    return n;
  };
}

/** Seconds (fractions allowed) to milliseconds. */
function seconds(min: number, max: number) {
  return (raw: string): number => {
    if (!/^-?\d*\.?\d+$/.test(raw.trim())) throw new BadValue("must be a number of seconds");
    const n = Number(raw.trim());
    if (n < min || n > max) throw new BadValue(`must be between ${min} and ${max} seconds`);
    return Math.round(n * 1000);
  };
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string): T => {
    const v = raw.trim().toLowerCase();
    if (!(values as readonly string[]).includes(v)) {
      throw new BadValue(`must be one of ${values.join(", ")}`);
    }
    return v as T;
  };
}

/** The store a database URL names. */
export type DbTarget =
  | { kind: "sqlite" /** A file path, or ":memory:". */; path: string }
  | {
      kind: "postgres";
      /** The connection URL without the `schema` parameter. */
      url: string;
      /** The schema the tables live in (`?schema=`, default `jobqueue`). */
      schema: string;
    };

/**
 * Reads the seed's `sqlite+aiosqlite:///./data/jobqueue.db` spelling, `sqlite:` URLs in the
 * SQLAlchemy form (three slashes then a relative path, four for an absolute one), plain paths,
 * and `postgres://` / `postgresql://` URLs with an optional `?schema=` (default `jobqueue`).
 */
export function parseDbUrl(raw: string): DbTarget {
  const url = raw.trim();
  const sqlite = /^sqlite(?:\+[\w-]+)?:(?:\/\/\/?)?(.*)$/i.exec(url);
  if (sqlite) {
    const rest = sqlite[1]!.split("?")[0]!;
    if (rest === ":memory:" || rest === "") return { kind: "sqlite", path: ":memory:" };
    return {
      kind: "sqlite",
      path: resolve(rest.startsWith("/") ? rest : `./${rest.replace(/^\.\//, "")}`),
    };
  }
  const pg = /^postgres(?:ql)?(?:\+[\w-]+)?:\/\//i.exec(url);
  if (pg) {
    let parsed: URL;
    try {
      parsed = new URL(`postgres://${url.slice(pg[0].length)}`);
    } catch {
      throw new BadValue("is not a valid postgres:// URL");
    }
    const schema = parsed.searchParams.get("schema") ?? "jobqueue";
    if (!/^[a-z_][a-z0-9_]{0,59}$/.test(schema)) {
      throw new BadValue(
        "schema must be a lowercase SQL name: letters, digits and _, not starting with a digit",
      );
    }
    parsed.searchParams.delete("schema");
    return { kind: "postgres", url: parsed.toString(), schema };
  }
  if (/^[a-z][\w+.-]*:\/\//i.test(url)) {
    throw new BadValue(
      "must be a sqlite: URL (sqlite:///./data/jobqueue.db), a file path or a postgres:// URL",
    );
  }
  if (url === "") throw new BadValue("must not be empty");
  return { kind: "sqlite", path: resolve(url) };
}

const DAY = 86_400;

/** The settings, in the order the README's table lists them. */
export const SETTINGS = [
  {
    env: "JOBQUEUE_HOST",
    key: "host",
    default: "127.0.0.1",
    doc: "Address to listen on.",
    parse: (raw: string) => {
      if (raw.trim() === "") throw new BadValue("must not be empty");
      return raw.trim();
    },
  } satisfies Setting<"host">,
  {
    env: "JOBQUEUE_PORT",
    key: "port",
    default: "8080",
    doc: "Port for every protocol (gRPC, gRPC-Web, Connect, REST); 0 picks a free one.",
    parse: int(0, 65535),
  } satisfies Setting<"port">,
  {
    env: "JOBQUEUE_DB_URL",
    key: "db",
    default: "sqlite+aiosqlite:///./data/jobqueue.db",
    doc: "Where jobs are stored: a `sqlite:` URL (`sqlite+aiosqlite:` too) or a file path for one node; `postgres://user@host:5432/db?schema=jobqueue` for several nodes sharing one PostgreSQL database (schema default `jobqueue`).",
    parse: parseDbUrl,
  } satisfies Setting<"db">,
  {
    env: "JOBQUEUE_NODE_ID",
    key: "nodeId",
    default: "",
    doc: "This node's name among several on one database, shown in `GET /nodes` and on each attempt. Empty: the host name and process id.",
    parse: (raw) => {
      const id = raw.trim() === "" ? `${hostname()}-${process.pid}` : raw.trim();
      if (!/^[\w.:@-]{1,128}$/.test(id)) {
        throw new BadValue("must be 1 to 128 letters, digits or . _ : @ -");
      }
      return id;
    },
  } satisfies Setting<"nodeId">,
  {
    env: "JOBQUEUE_DB_POOL_SIZE",
    key: "dbPoolSize",
    default: "10",
    doc: "PostgreSQL connections per node at most (one more listens for wake-ups).",
    parse: int(2, 1000),
  } satisfies Setting<"dbPoolSize">,
  {
    env: "JOBQUEUE_MIN_FREE_DISK_MB",
    key: "minFreeDiskBytes",
    default: "64",
    doc: "SQLite: free space, in MiB, the disk holding the database must have for `/readyz` to say ready (writes are still tried below it). 0: no check.",
    parse: (raw) => int(0, 1_048_576)(raw) * 1_048_576,
  } satisfies Setting<"minFreeDiskBytes">,
  {
    env: "JOBQUEUE_CONCURRENCY",
    key: "concurrency",
    default: "4",
    doc: "HTTP calls in flight at most.",
    parse: int(1, 10_000),
  } satisfies Setting<"concurrency">,
  {
    env: "JOBQUEUE_POLL_INTERVAL",
    key: "pollIntervalMs",
    default: "0.3",
    doc: "Seconds between fallback checks for due jobs; enqueues wake workers at once regardless.",
    parse: seconds(0.01, 60),
  } satisfies Setting<"pollIntervalMs">,
  {
    env: "JOBQUEUE_DEFAULT_TIMEOUT",
    key: "defaultTimeoutMs",
    default: "30",
    doc: "Seconds one attempt may take (connect, headers and body) when the job sets no `timeout_sec`.",
    parse: seconds(0.001, 86_400),
  } satisfies Setting<"defaultTimeoutMs">,
  {
    env: "JOBQUEUE_MAX_TIMEOUT",
    key: "maxTimeoutMs",
    default: "3600",
    doc: "The largest `timeout_sec` a job may ask for, in seconds.",
    parse: seconds(0.001, 86_400),
  } satisfies Setting<"maxTimeoutMs">,
  {
    env: "JOBQUEUE_RESULT_MAX_BYTES",
    key: "resultMaxBytes",
    default: "1048576",
    doc: "Response bytes kept per attempt; the rest is not read (`truncated: true`).",
    parse: int(0, 1 << 30),
  } satisfies Setting<"resultMaxBytes">,
  {
    env: "JOBQUEUE_CALLBACK_MAX_BYTES",
    key: "callbackMaxBytes",
    default: "65536",
    doc: "The JSON a callback delivers at most: past it, `response_body` is left out (`truncated: true`), then `response_headers`.",
    parse: int(1024, 1 << 30),
  } satisfies Setting<"callbackMaxBytes">,
  {
    env: "JOBQUEUE_CALLBACK_MAX_ATTEMPTS",
    key: "callbackMaxAttempts",
    default: "5",
    doc: "Attempts of a callback delivery (exponential backoff from `JOBQUEUE_DEFAULT_BACKOFF_SECONDS`).",
    parse: int(1, 100),
  } satisfies Setting<"callbackMaxAttempts">,
  {
    env: "JOBQUEUE_MAX_BODY_BYTES",
    key: "maxBodyBytes",
    default: "1048576",
    doc: "The largest request body a job may carry, in bytes.",
    parse: int(0, 1 << 30),
  } satisfies Setting<"maxBodyBytes">,
  {
    env: "JOBQUEUE_LEASE_SECONDS",
    key: "leaseMs",
    default: "30",
    doc: "How long a claim holds without renewal; a dead worker's jobs run again after it.",
    parse: seconds(0.1, DAY),
  } satisfies Setting<"leaseMs">,
  {
    env: "JOBQUEUE_SHUTDOWN_GRACE_SECONDS",
    key: "shutdownGraceMs",
    default: "10",
    doc: "On SIGTERM/SIGINT, how long calls in flight may finish before they are aborted and their jobs put back.",
    parse: seconds(0, DAY),
  } satisfies Setting<"shutdownGraceMs">,
  {
    env: "JOBQUEUE_DEFAULT_MAX_ATTEMPTS",
    key: "defaultMaxAttempts",
    default: "3",
    doc: "`max_attempts` when a job sets none.",
    parse: int(1, 100),
  } satisfies Setting<"defaultMaxAttempts">,
  {
    env: "JOBQUEUE_DEFAULT_BACKOFF_STRATEGY",
    key: "defaultBackoffStrategy",
    default: "exponential",
    doc: "`backoff_strategy` when a job sets none: fixed, linear or exponential.",
    parse: oneOf(BACKOFF_STRATEGIES),
  } satisfies Setting<"defaultBackoffStrategy">,
  {
    env: "JOBQUEUE_DEFAULT_BACKOFF_SECONDS",
    key: "defaultBackoffBaseMs",
    default: "1",
    doc: "`backoff_seconds` when a job sets none.",
    parse: seconds(0, DAY),
  } satisfies Setting<"defaultBackoffBaseMs">,
  {
    env: "JOBQUEUE_BACKOFF_MAX_SECONDS",
    key: "backoffMaxMs",
    default: "3600",
    doc: "Cap on any backoff delay.",
    parse: seconds(0, 7 * DAY),
  } satisfies Setting<"backoffMaxMs">,
  {
    env: "JOBQUEUE_RETRY_AFTER_MAX_SECONDS",
    key: "retryAfterMaxMs",
    default: "3600",
    doc: "Cap on a delay asked for by a target's `Retry-After` header.",
    parse: seconds(0, 7 * DAY),
  } satisfies Setting<"retryAfterMaxMs">,
  {
    env: "JOBQUEUE_DEFAULT_TTL_SECONDS",
    key: "defaultTtlMs",
    default: "",
    doc: "`ttl_seconds` when a job sets none; empty keeps finished jobs until deleted.",
    parse: (raw: string) => (raw.trim() === "" ? null : int(1, 3650 * DAY)(raw) * 1000),
  } satisfies Setting<"defaultTtlMs">,
  {
    env: "JOBQUEUE_CLEANUP_INTERVAL",
    key: "cleanupIntervalMs",
    default: "60",
    doc: "Longest pause, in seconds, between sweeps that delete expired jobs (expired jobs read as gone at once).",
    parse: seconds(0.01, DAY),
  } satisfies Setting<"cleanupIntervalMs">,
  {
    env: "JOBQUEUE_EVENT_RETENTION_SECONDS",
    key: "eventRetentionMs",
    default: "86400",
    doc: "How long the event stream keeps an event, in seconds: a watcher may resume from a cursor this old; an older one is told to list again (410 / `OUT_OF_RANGE`).",
    parse: seconds(60, 365 * DAY),
  } satisfies Setting<"eventRetentionMs">,
  {
    env: "JOBQUEUE_LOG_LEVEL",
    key: "logLevel",
    default: "info",
    doc: "fatal, error, warn, info, debug, trace or silent. Logs are JSON lines on stdout.",
    parse: oneOf(LOG_LEVELS),
  } satisfies Setting<"logLevel">,
  {
    env: "JOBQUEUE_ACCESS_LOG",
    key: "accessLog",
    default: "0",
    doc: "1: log one line per call (protocol, method, route, status, code, duration, principal, address; never query strings, headers or bodies).",
    parse: (raw: string) => {
      const v = raw.trim().toLowerCase();
      if (["1", "true", "on", "yes"].includes(v)) return true;
      if (["0", "false", "off", "no"].includes(v)) return false;
      throw new BadValue("must be 1 or 0");
    },
  } satisfies Setting<"accessLog">,
  {
    env: "JOBQUEUE_METRICS",
    key: "metrics",
    default: "auto",
    doc: "Who may read Prometheus metrics at `GET /metrics`: `open` (anyone, like `/healthz`), `keys` (an API key of any role), `off` (404), or `auto`: `keys` when the API needs keys, else `open`.",
    parse: oneOf(["auto", "open", "keys", "off"] as const),
  } satisfies Setting<"metrics">,
  {
    env: "JOBQUEUE_OTLP_TRACES_URL",
    key: "otlpTracesUrl",
    default: "",
    doc: "OpenTelemetry: an OTLP/HTTP traces endpoint (e.g. `http://collector:4318/v1/traces`) to export a span per attempt, the outbound call inside it. Empty: no traces (the OpenTelemetry packages are not loaded).",
    parse: (raw) => {
      const v = raw.trim();
      if (v === "") return null;
      let u: URL;
      try {
        u = new URL(v);
      } catch {
        throw new BadValue("must be an http:// or https:// URL");
      }
      if (u.protocol !== "http:" && u.protocol !== "https:") {
        throw new BadValue("must be an http:// or https:// URL");
      }
      return v;
    },
  } satisfies Setting<"otlpTracesUrl">,
  {
    env: "JOBQUEUE_ALLOWED_HOSTS",
    key: "allowedHosts",
    default: "",
    doc: "Comma list of host names (`*.` wildcards), IPs and CIDRs that jobs may call even though they are not public (e.g. `127.0.0.1,*.internal.example`).",
    parse: hostList,
    section: "security",
  } satisfies Setting<"allowedHosts">,
  {
    env: "JOBQUEUE_DENIED_HOSTS",
    key: "deniedHosts",
    default: "",
    doc: "Comma list of host names, IPs and CIDRs that jobs may never call, public or not.",
    parse: hostList,
    section: "security",
  } satisfies Setting<"deniedHosts">,
  {
    env: "JOBQUEUE_SECRET_KEY",
    key: "secretKeys",
    default: "",
    doc: "Keys that encrypt secret headers (AES-256-GCM): 32 bytes as 64 hex digits or base64; comma-separated, the first encrypts, all decrypt (rotation). Empty: a key is generated once into `secret.key` beside the database (mode 0600), with a warning.",
    parse: (raw) => {
      if (raw.trim() === "") return null;
      try {
        return parseSecretKeys(raw);
      } catch (err) {
        throw new BadValue((err as Error).message);
      }
    },
    secret: true,
    section: "security",
  } satisfies Setting<"secretKeys">,
  {
    env: "JOBQUEUE_API_KEYS_FILE",
    key: "apiKeysFile",
    default: "",
    doc: "A file of API keys, one per line: `<principal> <role> sha256:<hex> [whsec_<base64> ...]` (roles: admin, submitter, reader; the optional `whsec_` secrets sign the principal's callbacks and signed calls, several while rotating). `npm run keygen -- <principal> <role>` makes a key and its line.",
    parse: (raw) => {
      if (raw.trim() === "") return [];
      let text: string;
      try {
        text = readFileSync(raw.trim(), "utf8");
      } catch (err) {
        throw new BadValue(`cannot read the file: ${(err as NodeJS.ErrnoException).code ?? err}`);
      }
      try {
        return parseApiKeys(text, "line");
      } catch (err) {
        throw new BadValue((err as Error).message);
      }
    },
    section: "security",
  } satisfies Setting<"apiKeysFile">,
  {
    env: "JOBQUEUE_API_KEYS",
    key: "apiKeys",
    default: "",
    doc: "API keys in the environment instead of (or as well as) a file: entries as in the file, separated by commas.",
    parse: (raw) => {
      try {
        return parseApiKeys(raw, "entry");
      } catch (err) {
        throw new BadValue((err as Error).message);
      }
    },
    secret: true,
    section: "security",
  } satisfies Setting<"apiKeys">,
  {
    env: "JOBQUEUE_SIGNING_SECRETS",
    key: "signingSecrets",
    default: "",
    doc: "Signing secrets (`whsec_<base64>`, separated by spaces) for the callbacks and signed calls of jobs submitted without an API key; a principal's own go on its API key entries.",
    parse: (raw) => {
      try {
        return raw.trim() === "" ? [] : parseSigningSecrets(raw, "JOBQUEUE_SIGNING_SECRETS");
      } catch (err) {
        throw new BadValue((err as InvalidArgumentError).problem ?? (err as Error).message);
      }
    },
    secret: true,
    section: "security",
  } satisfies Setting<"signingSecrets">,
  {
    env: "JOBQUEUE_AUTH",
    key: "authMode",
    default: "auto",
    doc: "`auto`: API keys are required when any are configured; without keys the server only listens on loopback. `keys`: keys are required (start-up fails without any). `none`: no authentication, on any address (say so only behind a gateway that authenticates).",
    parse: oneOf(["auto", "keys", "none"] as const),
    section: "security",
  } satisfies Setting<"authMode">,
  {
    env: "JOBQUEUE_AUDIT_RETENTION_DAYS",
    key: "auditRetentionMs",
    default: "90",
    doc: "Days the audit log is kept.",
    parse: (raw) => int(1, 36_500)(raw) * 86_400_000,
    section: "security",
  } satisfies Setting<"auditRetentionMs">,
  {
    env: "JOBQUEUE_AUDIT_REFUSALS_PER_MINUTE",
    key: "auditRefusalsPerMinute",
    default: "10",
    doc: "Refused calls of one kind (address, principal, method, outcome, protocol) recorded one by one each minute; further ones are counted into one audit row per kind and minute.",
    parse: int(0, 1_000_000),
    section: "security",
  } satisfies Setting<"auditRefusalsPerMinute">,
  {
    env: "JOBQUEUE_AUTH_FAILURES_PER_MINUTE",
    key: "authFailuresPerMinute",
    default: "300",
    doc: "Failed authentications an address may make in a minute; beyond, its calls get 429 / `RESOURCE_EXHAUSTED` with `Retry-After` until the minute ends. 0: no limit.",
    parse: int(0, 1_000_000),
    section: "security",
  } satisfies Setting<"authFailuresPerMinute">,
  {
    env: "JOBQUEUE_CORS_ORIGINS",
    key: "corsOrigins",
    default: "",
    doc: "Browser origins allowed to call the API from other sites (CORS), comma-separated, e.g. `https://app.example.com`; `*` allows any. Empty: CORS is off.",
    parse: (raw: string) => {
      try {
        return raw
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s !== "")
          .map(parseOrigin);
      } catch (err) {
        throw new BadValue((err as Error).message);
      }
    },
    section: "security",
  } satisfies Setting<"corsOrigins">,
  {
    env: "JOBQUEUE_HOST_LIMITS",
    key: "hostLimits",
    default: "",
    doc: "Per-destination budgets: `<pattern>=<limit>[;<limit>]` rules, comma-separated; limits `n/s`, `n/m`, `burst=n`, `concurrency=n`. A job's bucket is its `rate_limit_key`, else its URL's host. E.g. `api.example.com=10/s;concurrency=2,*.slow.io=1/s`.",
    parse: (raw) => {
      try {
        return parseHostLimits(raw);
      } catch (err) {
        throw new BadValue((err as Error).message);
      }
    },
    section: "security",
  } satisfies Setting<"hostLimits">,
  {
    env: "JOBQUEUE_MAX_REQUEST_BYTES",
    key: "maxRequestBytes",
    default: "4194304",
    doc: "The largest request the API accepts (any protocol), in bytes.",
    parse: int(1024, 1 << 30),
    section: "limits",
  } satisfies Setting<"maxRequestBytes">,
  {
    env: "JOBQUEUE_MAX_URL_LENGTH",
    key: "maxUrlLength",
    default: "8192",
    doc: "The longest job `url`, in characters.",
    parse: int(64, 1 << 20),
    section: "limits",
  } satisfies Setting<"maxUrlLength">,
  {
    env: "JOBQUEUE_MAX_HEADERS",
    key: "maxHeaders",
    default: "64",
    doc: "The most `headers` a job may set.",
    parse: int(1, 10_000),
    section: "limits",
  } satisfies Setting<"maxHeaders">,
  {
    env: "JOBQUEUE_MAX_HEADER_BYTES",
    key: "maxHeaderBytes",
    default: "16384",
    doc: "The most bytes a job's header names and values may hold together.",
    parse: int(256, 1 << 24),
    section: "limits",
  } satisfies Setting<"maxHeaderBytes">,
  {
    env: "JOBQUEUE_MAX_TAGS",
    key: "maxTags",
    default: "20",
    doc: "The most `tags` a job may carry.",
    parse: int(0, 1000),
    section: "limits",
  } satisfies Setting<"maxTags">,
  {
    env: "JOBQUEUE_MAX_TAG_LENGTH",
    key: "maxTagLength",
    default: "64",
    doc: "The longest tag, in characters.",
    parse: int(1, 1024),
    section: "limits",
  } satisfies Setting<"maxTagLength">,
  {
    env: "JOBQUEUE_MAX_PAGE_SIZE",
    key: "maxPageSize",
    default: "1000",
    doc: "The largest `page_size` of a list.",
    parse: int(1, 100_000),
    section: "limits",
  } satisfies Setting<"maxPageSize">,
  {
    env: "JOBQUEUE_MAX_TTL_SECONDS",
    key: "maxTtlMs",
    default: "31536000",
    doc: "The largest `ttl_seconds` a job may ask for (default one year).",
    parse: (raw) => int(1, 100 * 365 * DAY)(raw) * 1000,
    section: "limits",
  } satisfies Setting<"maxTtlMs">,
  {
    env: "JOBQUEUE_MAX_BATCH_SIZE",
    key: "maxBatchSize",
    default: "1000",
    doc: "The most jobs one `EnqueueJobs` (`POST /jobs:batch`) may carry.",
    parse: int(1, 100_000),
    section: "limits",
  } satisfies Setting<"maxBatchSize">,
] as const;

function hostList(raw: string): string[] {
  const entries = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const e of entries) {
    try {
      parseHostPattern(e);
    } catch (err) {
      throw new BadValue((err as Error).message);
    }
  }
  return entries;
}

/** Whether a listen address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  return h === "::1";
}

/**
 * Reads the configuration from environment variables, using each setting's default where a
 * variable is unset or empty. Throws a {@link ConfigError} naming every bad variable.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  const config: Partial<Record<keyof Config, unknown>> = {};
  for (const setting of SETTINGS) {
    const given = env[setting.env];
    const raw = given === undefined || given.trim() === "" ? setting.default : given;
    try {
      config[setting.key] = setting.parse(raw);
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      const shown =
        "secret" in setting && setting.secret ? "(hidden)" : JSON.stringify(given ?? "");
      problems.push(`${setting.env}=${shown}: ${err.message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const result = config as Config;
  if (result.defaultTimeoutMs > result.maxTimeoutMs) {
    problems.push("JOBQUEUE_DEFAULT_TIMEOUT: must not exceed JOBQUEUE_MAX_TIMEOUT");
  }
  if (result.db.kind === "postgres" && result.secretKeys === null) {
    problems.push(
      "JOBQUEUE_SECRET_KEY: must be set with a PostgreSQL JOBQUEUE_DB_URL, to the same key on every node (openssl rand -hex 32 makes one), so that any node can open the secret headers another sealed",
    );
  }
  if (result.maxRequestBytes < result.maxBodyBytes) {
    problems.push("JOBQUEUE_MAX_REQUEST_BYTES: must be at least JOBQUEUE_MAX_BODY_BYTES");
  }
  const keys = [...result.apiKeysFile, ...result.apiKeys];
  const seen = new Map<string, string>();
  for (const k of keys) {
    const other = seen.get(k.sha256);
    if (other !== undefined) {
      problems.push(
        `JOBQUEUE_API_KEYS_FILE/JOBQUEUE_API_KEYS: the same key is configured for ${other} and ${k.principal}`,
      );
    }
    seen.set(k.sha256, k.principal);
  }
  if (result.authMode === "none" && keys.length > 0) {
    problems.push(
      "JOBQUEUE_AUTH=none, yet API keys are configured (JOBQUEUE_API_KEYS_FILE, JOBQUEUE_API_KEYS): choose one",
    );
  } else if (result.authMode === "keys" && keys.length === 0) {
    problems.push(
      "JOBQUEUE_AUTH=keys, but no API keys are configured (JOBQUEUE_API_KEYS_FILE or JOBQUEUE_API_KEYS)",
    );
  } else if (result.authMode === "auto" && keys.length === 0 && !isLoopback(result.host)) {
    problems.push(
      `JOBQUEUE_HOST=${result.host} is not a loopback address and no API keys are configured: set JOBQUEUE_API_KEYS_FILE (or JOBQUEUE_API_KEYS), or JOBQUEUE_AUTH=none to serve without authentication`,
    );
  }
  if (result.metrics === "keys" && keys.length === 0) {
    problems.push(
      "JOBQUEUE_METRICS=keys, but no API keys are configured (JOBQUEUE_API_KEYS_FILE or JOBQUEUE_API_KEYS)",
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  result.auth = { enabled: keys.length > 0, keys };
  return result;
}

/** A `JOBQUEUE_*` variable no setting reads, and the setting whose name is closest to it. */
export interface UnknownVariable {
  name: string;
  closest: string;
  /** Whether the closest name is near enough to be a likely misspelling. */
  likelyTypo: boolean;
}

/**
 * The `JOBQUEUE_*` variables in `env` that no setting reads (a misspelt setting is otherwise
 * silently ignored), each with the closest setting name by edit distance.
 */
export function unknownVariables(env: Record<string, string | undefined>): UnknownVariable[] {
  const known = SETTINGS.map((s) => s.env as string);
  const out: UnknownVariable[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith("JOBQUEUE_") || known.includes(name)) continue;
    let closest = known[0]!;
    let best = Number.POSITIVE_INFINITY;
    for (const k of known) {
      const d = editDistance(name.toUpperCase(), k);
      if (d < best) {
        best = d;
        closest = k;
      }
    }
    const suffix = name.length - "JOBQUEUE_".length;
    out.push({ name, closest, likelyTypo: best <= Math.max(2, Math.floor(suffix / 3)) });
  }
  return out;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
