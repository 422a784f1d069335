import { readFileSync } from "node:fs";
import type { JsonObject } from "@bufbuild/protobuf";
import {
  type EnqueueJobRequest,
  EnqueueJobRequestSchema,
} from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { InvalidArgumentError } from "../job/errors.js";
import { parseJsonStrict } from "../rpc/json-text.js";
import { fromRestJson } from "../rpc/rest-json.js";
import { CliError, EXIT } from "./exit-codes.js";

/** The `submit` flags that describe a job (commander's parsed options). */
export interface JobFlags {
  method?: string;
  header?: string[];
  param?: string[];
  data?: string;
  dataRaw?: string;
  timeout?: string;
  priority?: string;
  maxAttempts?: string;
  backoff?: string;
  backoffSeconds?: string;
  scheduledAt?: string;
  ttl?: string;
  tag?: string[];
  idempotencyKey?: string;
  secretHeader?: string[];
  followRedirects?: boolean;
  maxRedirects?: string;
  rateLimitKey?: string;
  callbackUrl?: string;
  sign?: boolean;
  signingSecret?: string;
}

/**
 * The job the flags describe, in POST /jobs's JSON (so a file and the flags mean the same, and the
 * server's own REST decoder reads both). Only the flags given appear.
 */
export function jobJsonOfFlags(url: string | undefined, f: JobFlags): JsonObject {
  const json: JsonObject = {};
  if (url !== undefined) json.url = url;
  if (f.method !== undefined) json.method = f.method.toUpperCase();
  if (f.header?.length) json.headers = pairs(f.header, ":", "--header", "Name: value");
  if (f.param?.length) json.params = pairs(f.param, "=", "--param", "name=value");
  if (f.data !== undefined && f.dataRaw !== undefined) {
    throw new CliError("--data and --data-raw: give one body", EXIT.usage);
  }
  if (f.data !== undefined) json.body = jsonArg(f.data, "--data");
  if (f.dataRaw !== undefined) json.body = readArg(f.dataRaw);
  if (f.timeout !== undefined) json.timeout_sec = num(f.timeout, "--timeout");
  if (f.priority !== undefined) json.priority = num(f.priority, "--priority");
  if (f.maxAttempts !== undefined) json.max_attempts = num(f.maxAttempts, "--max-attempts");
  if (f.backoff !== undefined) json.backoff_strategy = f.backoff.toLowerCase();
  if (f.backoffSeconds !== undefined)
    json.backoff_seconds = num(f.backoffSeconds, "--backoff-seconds");
  if (f.scheduledAt !== undefined) json.scheduled_at = whenArg(f.scheduledAt);
  if (f.ttl !== undefined) json.ttl_seconds = num(f.ttl, "--ttl");
  if (f.tag?.length) json.tags = f.tag;
  if (f.idempotencyKey !== undefined) json.idempotency_key = f.idempotencyKey;
  if (f.secretHeader?.length) json.secret_headers = f.secretHeader;
  if (f.followRedirects) json.follow_redirects = true;
  if (f.maxRedirects !== undefined) json.max_redirects = num(f.maxRedirects, "--max-redirects");
  if (f.rateLimitKey !== undefined) json.rate_limit_key = f.rateLimitKey;
  if (f.callbackUrl !== undefined) json.callback_url = f.callbackUrl;
  if (f.sign) json.sign = true;
  if (f.signingSecret !== undefined) json.signing_secret = f.signingSecret;
  return json;
}

/**
 * A job from its JSON, with `defaults` (the flags) under it: the JSON's own fields win. Errors
 * name where the job came from and the field, as the server would.
 */
export function jobOfJson(json: unknown, defaults: JsonObject, where: string): EnqueueJobRequest {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new CliError(`${where}: a job must be a JSON object`, EXIT.usage);
  }
  try {
    return fromRestJson(EnqueueJobRequestSchema, { ...defaults, ...(json as JsonObject) });
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      throw new CliError(`${where}: ${err.message}`, EXIT.usage);
    }
    throw err;
  }
}

/**
 * The jobs of a file (or "-" for stdin): one JSON object, a JSON array of them, or NDJSON (one per
 * line; blank lines skipped). Returned as JSON values, checked one by one by {@link jobOfJson}.
 */
export function readJobsFile(path: string): { json: unknown; where: string }[] {
  let text: string;
  try {
    text = readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (err) {
    throw new CliError(`--file: cannot read ${path}: ${(err as Error).message}`, EXIT.usage);
  }
  const name = path === "-" ? "stdin" : path;
  const trimmed = text.trimStart();
  if (trimmed.startsWith("[")) {
    const all = parse(text, name);
    if (!Array.isArray(all)) throw new CliError(`${name}: not a JSON array`, EXIT.usage);
    return all.map((json, i) => ({ json, where: `${name}: job ${i + 1}` }));
  }
  // One object over several lines, or NDJSON: a whole-file parse tells them apart.
  try {
    return [{ json: parseJsonStrict(text), where: name }];
  } catch {
    // NDJSON
  }
  const jobs: { json: unknown; where: string }[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    jobs.push({ json: parse(line, `${name}: line ${i + 1}`), where: `${name}: line ${i + 1}` });
  }
  return jobs;
}

function parse(text: string, where: string): unknown {
  try {
    return parseJsonStrict(text);
  } catch (err) {
    throw new CliError(`${where}: not valid JSON (${(err as Error).message})`, EXIT.usage);
  }
}

function pairs(values: string[], sep: string, flag: string, shape: string): JsonObject {
  const out: JsonObject = {};
  for (const v of values) {
    const i = v.indexOf(sep);
    if (i <= 0) throw new CliError(`${flag} ${JSON.stringify(v)}: expected "${shape}"`, EXIT.usage);
    out[v.slice(0, i).trim()] = v.slice(i + 1).trim();
  }
  return out;
}

function num(v: string, flag: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) {
    throw new CliError(`${flag}: ${JSON.stringify(v)} is not a number`, EXIT.usage);
  }
  return n;
}

/** `@file` reads a file; anything else is the value itself. */
function readArg(v: string): string {
  if (!v.startsWith("@")) return v;
  try {
    return readFileSync(v.slice(1) === "-" ? 0 : v.slice(1), "utf8");
  } catch (err) {
    throw new CliError(`cannot read ${v.slice(1)}: ${(err as Error).message}`, EXIT.usage);
  }
}

function jsonArg(v: string, flag: string) {
  return parse(readArg(v), flag) as JsonObject;
}

/** An RFC 3339 time, or "+90s" / "+5m" / "+2h" from now. */
export function whenArg(v: string): string {
  const rel = /^\+(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(v);
  if (rel) {
    const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[rel[2] as "s" | "m" | "h" | "d"];
    return new Date(Date.now() + Number(rel[1]) * unit).toISOString();
  }
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) {
    throw new CliError(
      `--scheduled-at: ${JSON.stringify(v)} is neither a time nor +N(s|m|h|d)`,
      EXIT.usage,
    );
  }
  return d.toISOString();
}
