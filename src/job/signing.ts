import { createHmac } from "node:crypto";
import { InvalidArgumentError } from "./errors.js";
import type { RequestBody } from "./types.js";

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): a signed request carries
 * `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, which is
 * `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` for each active secret, separated by
 * spaces, so that a receiver accepts the message with whichever of the secrets it knows while
 * secrets rotate. A secret is written `whsec_<base64>`; the HMAC key is its decoded bytes.
 */

export const SIGNING_SECRET_PREFIX = "whsec_";
/** The key sizes the convention asks for, in bytes. */
export const SIGNING_KEY_MIN_BYTES = 24;
export const SIGNING_KEY_MAX_BYTES = 64;
/** Secrets per job or per principal at most (a rotation needs two). */
export const SIGNING_SECRETS_MAX = 5;

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Reads signing secrets given as `whsec_<base64>`, separated by spaces (or given as a list), or
 * throws {@link InvalidArgumentError} naming `field`. Messages never repeat a secret.
 */
export function parseSigningSecrets(given: string | string[], field: string): string[] {
  const tokens = (Array.isArray(given) ? given : [given]).flatMap((s) =>
    s.split(/\s+/).filter((t) => t !== ""),
  );
  if (tokens.length > SIGNING_SECRETS_MAX) {
    throw new InvalidArgumentError(
      field,
      `holds ${tokens.length} secrets; at most ${SIGNING_SECRETS_MAX}`,
    );
  }
  return tokens.map((token, i) => {
    const which = tokens.length > 1 ? `secret ${i + 1}` : "the secret";
    if (!token.startsWith(SIGNING_SECRET_PREFIX)) {
      throw new InvalidArgumentError(
        field,
        `${which} does not start with ${SIGNING_SECRET_PREFIX} (a Standard Webhooks secret is ${SIGNING_SECRET_PREFIX}<base64>)`,
      );
    }
    const b64 = token.slice(SIGNING_SECRET_PREFIX.length);
    if (!BASE64.test(b64)) {
      throw new InvalidArgumentError(
        field,
        `${which} is not ${SIGNING_SECRET_PREFIX} followed by base64`,
      );
    }
    const bytes = Buffer.from(b64, "base64").byteLength;
    if (bytes < SIGNING_KEY_MIN_BYTES || bytes > SIGNING_KEY_MAX_BYTES) {
      throw new InvalidArgumentError(
        field,
        `${which} is ${bytes} bytes once decoded; use ${SIGNING_KEY_MIN_BYTES} to ${SIGNING_KEY_MAX_BYTES} (e.g. ${SIGNING_SECRET_PREFIX}$(openssl rand -base64 32))`,
      );
    }
    return token;
  });
}

/** A new random signing secret (32 bytes). */
export function generateSigningSecret(random: (n: number) => Buffer): string {
  return `${SIGNING_SECRET_PREFIX}${random(32).toString("base64")}`;
}

/**
 * The three headers of a signed request. `id` is stable across retries of one message (the job
 * id); `timestampSec` is when this attempt is sent; `body` exactly the bytes sent.
 */
export function signatureHeaders(p: {
  id: string;
  timestampSec: number;
  body: Uint8Array | undefined;
  secrets: readonly string[];
}): Record<string, string> {
  const timestamp = String(Math.floor(p.timestampSec));
  const signatures = p.secrets.map((secret) => {
    const key = Buffer.from(secret.slice(SIGNING_SECRET_PREFIX.length), "base64");
    const mac = createHmac("sha256", key)
      .update(`${p.id}.${timestamp}.`)
      .update(p.body ?? new Uint8Array())
      .digest("base64");
    return `v1,${mac}`;
  });
  return {
    "webhook-id": p.id,
    "webhook-timestamp": timestamp,
    "webhook-signature": signatures.join(" "),
  };
}

/** The bytes a request body is sent as (a JSON value other than a string as JSON text). */
export function requestBodyBytes(body: RequestBody | null): Buffer | undefined {
  if (body === null) return undefined;
  if (body.kind === "bytes") return Buffer.from(body.bytes);
  return Buffer.from(typeof body.value === "string" ? body.value : JSON.stringify(body.value));
}
