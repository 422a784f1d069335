import { createHash, randomBytes } from "node:crypto";
import { type Principal, ROLES, type Role } from "./principal.js";

/** One configured key: only its SHA-256 is kept. */
export interface ApiKeyEntry {
  principal: string;
  role: Role;
  sha256: string;
}

/**
 * Parses API key entries, one per line (or comma-separated in the environment form):
 * `<principal> <role> sha256:<64 hex digits>`; `#` starts a comment. Throws naming the line.
 */
export function parseApiKeys(text: string, source: string): ApiKeyEntry[] {
  const entries: ApiKeyEntry[] = [];
  // A comment runs to the end of its line, commas included; only then do commas separate entries.
  const lines = text.split("\n").flatMap((line) => line.replace(/#.*/, "").split(","));
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "") continue;
    const [principal, role, hash, extra] = line.split(/\s+/);
    const where = `${source} entry ${i + 1}`;
    if (!principal || !role || !hash || extra !== undefined) {
      throw new Error(`${where}: expected "<principal> <role> sha256:<hex>"`);
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
    entries.push({ principal, role: role as Role, sha256: m[1]!.toLowerCase() });
  }
  return entries;
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
