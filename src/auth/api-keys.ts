import { createHash, randomBytes } from "node:crypto";
import { InvalidArgumentError } from "../job/errors.js";
import { parseSigningSecrets } from "../job/signing.js";
import { type Principal, ROLES, type Role } from "./principal.js";

/** One configured key: only its SHA-256 is kept. */
export interface ApiKeyEntry {
  principal: string;
  role: Role;
  sha256: string;
  /** Signing secrets (`whsec_…`) of the principal given on this entry (Standard Webhooks). */
  signingSecrets: string[];
}

/**
 * Parses API key entries, one per line (or comma-separated in the environment form):
 * `<principal> <role> sha256:<64 hex digits> [whsec_<base64> …]`; `#` starts a comment. The
 * optional `whsec_` secrets sign the principal's callbacks and signed calls; several rotate.
 * Throws naming the line, never repeating a secret.
 */
export function parseApiKeys(text: string, source: string): ApiKeyEntry[] {
  const entries: ApiKeyEntry[] = [];
  // A comment runs to the end of its line, commas included; only then do commas separate entries.
  const lines = text.split("\n").flatMap((line) => line.replace(/#.*/, "").split(","));
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "") continue;
    const [principal, role, hash, ...extra] = line.split(/\s+/);
    const where = `${source} entry ${i + 1}`;
    if (!principal || !role || !hash) {
      throw new Error(`${where}: expected "<principal> <role> sha256:<hex> [whsec_<base64> ...]"`);
    }
    let signingSecrets: string[];
    try {
      signingSecrets = extra.length === 0 ? [] : parseSigningSecrets(extra, "signing secrets");
    } catch (err) {
      if (!(err instanceof InvalidArgumentError)) throw err;
      throw new Error(
        `${where}: after the key, only whsec_ signing secrets may follow: ${err.problem}`,
      );
    }
    if (!(ROLES as readonly string[]).includes(role)) {
      throw new Error(`${where}: role must be one of ${ROLES.join(", ")}`);
    }
    const m = /^sha256:([0-9a-f]{64})$/i.exec(hash);
    if (!m) {
      throw new Error(
        `${where}: the key must be given as sha256:<64 hex digits> (only hashes are stored; see npm run keygen)`,
      );
    }
    entries.push({ principal, role: role as Role, sha256: m[1]!.toLowerCase(), signingSecrets });
  }
  return entries;
}

/**
 * The signing secrets of each principal: those on all its entries, in order, each once; `anonymous`
 * for jobs submitted without authentication (JOBQUEUE_SIGNING_SECRETS).
 */
export function signingSecretsOf(
  entries: ApiKeyEntry[],
  anonymous: string[],
): (owner: string | null) => readonly string[] {
  const by = new Map<string, string[]>();
  for (const e of entries) {
    const list = by.get(e.principal) ?? [];
    for (const s of e.signingSecrets) if (!list.includes(s)) list.push(s);
    by.set(e.principal, list);
  }
  return (owner) => (owner === null ? anonymous : (by.get(owner) ?? []));
}

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** A new random key and the line that configures it. */
export function generateApiKey(principal: string, role: Role): { key: string; line: string } {
  const key = `jq_${randomBytes(24).toString("base64url")}`;
  return { key, line: `${principal} ${role} sha256:${hashApiKey(key)}` };
}

export type Authentication =
  | { kind: "anonymous" }
  | { kind: "principal"; principal: Principal }
  | { kind: "invalid" };

/**
 * Checks the key a request carries (`Authorization: Bearer <key>` or `x-api-key: <key>`). Keys are
 * looked up by their SHA-256, so the comparison never touches the key itself.
 */
export function createAuthenticator(entries: ApiKeyEntry[]) {
  const byHash = new Map(entries.map((e) => [e.sha256, { name: e.principal, role: e.role }]));
  return function authenticate(headers: Headers): Authentication {
    const auth = headers.get("authorization");
    let key: string | null = null;
    if (auth !== null) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      if (!m) return { kind: "invalid" };
      key = m[1]!;
    } else {
      key = headers.get("x-api-key");
    }
    if (key === null || key === "") return { kind: "anonymous" };
    const principal = byHash.get(hashApiKey(key));
    return principal ? { kind: "principal", principal } : { kind: "invalid" };
  };
}
