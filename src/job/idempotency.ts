import { createHash } from "node:crypto";
import { InvalidArgumentError } from "./errors.js";
import type { JobSpec, JsonValue } from "./types.js";

/**
 * A digest of everything a submit asks for (secret header values included, so it is a one-way
 * hash, never stored next to them in clear). Two submits with one idempotency key are the same
 * request when their digests are equal; otherwise the second is a conflict. Field order is fixed
 * here, so a digest does not depend on the order of the client's JSON.
 */
export function requestHash(spec: Omit<JobSpec, "signingSecrets">): string {
  const sorted = (o: Record<string, string>) =>
    Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1));
  const body =
    spec.body === null
      ? null
      : spec.body.kind === "bytes"
        ? { bytes: Buffer.from(spec.body.bytes).toString("base64") }
        : { json: canonicalBody(spec.body.value) };
  const canonical = JSON.stringify([
    spec.method,
    spec.url,
    sorted(spec.headers),
    [...spec.secretHeaderNames].sort(),
    sorted(spec.params),
    body,
    spec.timeoutMs,
    spec.priority,
    spec.maxAttempts,
    spec.backoffStrategy,
    spec.backoffBaseMs,
    spec.scheduledAt,
    spec.ttlMs,
    [...spec.tags].sort(),
    spec.followRedirects,
    spec.maxRedirects,
    spec.rateLimitKey,
    // Only when set, so that the digests of jobs stored before these fields existed still match.
    ...(spec.callbackUrl !== null || spec.sign ? [spec.callbackUrl, spec.sign] : []),
  ]);
  return createHash("sha256").update(canonical).digest("base64url");
}

function canonicalBody(value: JsonValue): JsonValue {
  try {
    return canonicalJson(value);
  } catch (err) {
    if (err instanceof RangeError) throw new InvalidArgumentError("body", "is nested too deeply");
    throw err;
  }
}

/** A JSON value with every object's keys sorted, so that equal values stringify equally. */
function canonicalJson(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(canonicalJson);
  if (value === null || typeof value !== "object") return value;
  const out: { [key: string]: JsonValue } = {};
  for (const key of Object.keys(value).sort()) out[key] = canonicalJson(value[key]!);
  return out;
}

/** Whether a stored job's digest and a new submit's differ (a job stored without one never does). */
export function isConflict(stored: string | null, incoming: string | null): boolean {
  return stored !== null && incoming !== null && stored !== incoming;
}
