import { lookup as dnsLookup } from "node:dns";
import { isIP, type LookupFunction } from "node:net";

/**
 * Where jobs may send requests. By default only public addresses: loopback, private, link-local
 * (cloud metadata included), CGNAT, multicast, reserved and documentation ranges are refused in
 * every spelling (IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64 and 6to4 IPv6 forms
 * included; Teredo and local-use NAT64 outright). Denied entries win over allowed ones, and a
 * denied IPv4 address stays denied in the IPv6 forms that carry it.
 *
 * The check runs on the resolved address at connect time (undici's `connect.lookup`), so DNS
 * rebinding cannot slip past a check made at submit time; IP literals never reach the resolver, so
 * the dispatcher also checks every URL (each redirect hop too) with {@link OutboundPolicy.refuse}.
 */
export interface OutboundPolicy {
  /**
   * A verdict that needs no DNS: the reason to refuse a URL whose host is an IP literal that is
   * not public, a local name (localhost), or a denied host; null otherwise.
   */
  refuse(url: URL): string | null;
  /** For undici's `connect.lookup`: resolves, then refuses any address not allowed. */
  lookup: LookupFunction;
}

export interface OutboundPolicyOptions {
  /** Host names (`*.` wildcards), IPs and CIDRs allowed even when not public. */
  allowed: string[];
  /** Host names, IPs and CIDRs always refused. */
  denied: string[];
  /** Resolves a host name to its addresses; injectable for tests. Defaults to the OS resolver. */
  resolve?: (hostname: string) => Promise<{ address: string; family: number }[]>;
}

/** The error a refused destination fails with; its code marks it as not worth retrying. */
export class DestinationBlockedError extends Error {
  override readonly name = "DestinationBlockedError";
  readonly code = "EDESTINATIONBLOCKED";
}

type Bytes = number[];
interface Cidr {
  bytes: Bytes;
  prefix: number;
}
type HostPattern = { kind: "name"; name: string; wildcard: boolean } | { kind: "cidr"; cidr: Cidr };

/** Ranges that are not public, with the words used to explain a refusal. */
const BLOCKED_V4: [string, string][] = [
  ["0.0.0.0/8", '"this network" (0.0.0.0/8)'],
  ["10.0.0.0/8", "private (10.0.0.0/8)"],
  ["100.64.0.0/10", "shared CGNAT (100.64.0.0/10)"],
  ["127.0.0.0/8", "loopback (127.0.0.0/8)"],
  ["169.254.0.0/16", "link-local (169.254.0.0/16, cloud metadata)"],
  ["172.16.0.0/12", "private (172.16.0.0/12)"],
  ["192.0.0.0/24", "IETF protocol assignment (192.0.0.0/24)"],
  ["192.0.2.0/24", "documentation (192.0.2.0/24)"],
  ["192.88.99.0/24", "6to4 relay anycast (192.88.99.0/24)"],
  ["192.168.0.0/16", "private (192.168.0.0/16)"],
  ["198.18.0.0/15", "benchmarking (198.18.0.0/15)"],
  ["198.51.100.0/24", "documentation (198.51.100.0/24)"],
  ["203.0.113.0/24", "documentation (203.0.113.0/24)"],
  ["224.0.0.0/4", "multicast (224.0.0.0/4)"],
  ["240.0.0.0/4", "reserved or broadcast (240.0.0.0/4)"],
];

const BLOCKED_V6: [string, string][] = [
  ["::/128", "unspecified (::)"],
  ["::1/128", "IPv6 loopback (::1)"],
  ["64:ff9b:1::/48", "local-use NAT64 (64:ff9b:1::/48)"],
  ["100::/64", "discard-only (100::/64)"],
  // Teredo tunnels to an obfuscated IPv4 address that could be anything; nothing public needs it.
  ["2001::/32", "Teredo (2001::/32)"],
  ["2001:db8::/32", "documentation (2001:db8::/32)"],
  ["fc00::/7", "unique local (fc00::/7)"],
  ["fe80::/10", "link-local (fe80::/10)"],
  ["fec0::/10", "site-local (fec0::/10)"],
  ["ff00::/8", "multicast (ff00::/8)"],
];

/** IPv6 ranges that carry an IPv4 address, and where it sits. */
const EMBEDDED_V4: [string, number, string][] = [
  ["::ffff:0:0/96", 12, "IPv4-mapped"],
  ["::ffff:0:0:0/96", 12, "IPv4-translated"],
  ["::/96", 12, "IPv4-compatible"],
  ["64:ff9b::/96", 12, "NAT64"],
  ["2002::/16", 2, "6to4"],
];

const V4_RANGES = BLOCKED_V4.map(([c, label]) => ({ cidr: parseCidr(c)!, label }));
const V6_RANGES = BLOCKED_V6.map(([c, label]) => ({ cidr: parseCidr(c)!, label }));
const V6_EMBEDDED = EMBEDDED_V4.map(([c, at, label]) => ({ cidr: parseCidr(c)!, at, label }));

/**
 * Why an address is not public, or null if it is. Accepts any IPv4 or IPv6 text form
 * `net.isIP` accepts; IPv6 forms that embed an IPv4 address are judged by that address.
 */
export function nonPublicReason(ip: string): string | null {
  const bytes = parseIp(ip);
  if (!bytes) return "not an IP address";
  return bytes.length === 4 ? v4Reason(bytes) : v6Reason(bytes);
}

function v4Reason(bytes: Bytes): string | null {
  for (const r of V4_RANGES) if (inCidr(bytes, r.cidr)) return r.label;
  return null;
}

/** The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4…), or null. */
function embeddedV4(bytes: Bytes): Bytes | null {
  if (bytes.length !== 16) return null;
  const e = V6_EMBEDDED.find((e) => inCidr(bytes, e.cidr));
  return e ? bytes.slice(e.at, e.at + 4) : null;
}

function v6Reason(bytes: Bytes): string | null {
  // ::1 and :: sit inside ::/96 (IPv4-compatible): judge them as themselves first.
  for (const r of V6_RANGES.slice(0, 2)) if (inCidr(bytes, r.cidr)) return r.label;
  for (const e of V6_EMBEDDED) {
    if (inCidr(bytes, e.cidr)) {
      const inner = v4Reason(bytes.slice(e.at, e.at + 4));
      return inner ? `${e.label} ${inner}` : null;
    }
  }
  for (const r of V6_RANGES) if (inCidr(bytes, r.cidr)) return r.label;
  return null;
}

export function createOutboundPolicy(options: OutboundPolicyOptions): OutboundPolicy {
  const allowed = options.allowed.map(parseHostPattern);
  const denied = options.denied.map(parseHostPattern);
  const resolve = options.resolve ?? osResolve;

  // Hosts arrive normalised like the patterns (lowercase, no root dot: "evil.example." matches).
  const nameMatches = (patterns: HostPattern[], host: string) =>
    patterns.some(
      (p) => p.kind === "name" && (p.wildcard ? host.endsWith(`.${p.name}`) : host === p.name),
    );
  const ipMatches = (patterns: HostPattern[], bytes: Bytes) =>
    patterns.some(
      (p) => p.kind === "cidr" && p.cidr.bytes.length === bytes.length && inCidr(bytes, p.cidr),
    );
  // A denied IPv4 address stays denied in its IPv6 spellings (::ffff:a.b.c.d, NAT64, 6to4…).
  const isDenied = (bytes: Bytes) => {
    const inner = embeddedV4(bytes);
    return ipMatches(denied, bytes) || (inner !== null && ipMatches(denied, inner));
  };

  /**
   * Why an address may not be called ("is denied …", "is not public: …"), or null. An address
   * reached through an allowed name (`byName`) may be private, but never denied.
   */
  function addressRefusal(address: string, byName = false): string | null {
    const bytes = parseIp(address);
    if (!bytes) return "is not an IP address";
    if (isDenied(bytes)) return "is denied (JOBQUEUE_DENIED_HOSTS)";
    if (byName || ipMatches(allowed, bytes)) return null;
    const reason = nonPublicReason(address);
    return reason ? `is not public: ${reason}; ${ALLOW_HINT}` : null;
  }

  function refuseHost(host: string): string | null {
    if (nameMatches(denied, host)) return `host ${host} is denied (JOBQUEUE_DENIED_HOSTS)`;
    if (isIP(host)) {
      const refusal = addressRefusal(host);
      return refusal ? `${host} ${refusal}` : null;
    }
    if (nameMatches(allowed, host)) return null;
    if (host === "localhost" || host.endsWith(".localhost")) {
      return `host ${host} is loopback; ${ALLOW_HINT}`;
    }
    return null;
  }

  /**
   * Verdicts by URL host name: a verdict depends on the host alone (and the fixed settings), and
   * a worker calls few hosts many times (parsing the address and matching the lists cost ~20 µs a
   * call in a profile). Bounded: cleared when it holds 10,000 names.
   */
  const verdicts = new Map<string, string | null>();

  const lookup = ((hostname: string, opts: unknown, callback: unknown) => {
    const cb = (typeof opts === "function" ? opts : callback) as (
      err: NodeJS.ErrnoException | null,
      address: string | { address: string; family: number }[],
      family?: number,
    ) => void;
    const o = typeof opts === "object" && opts !== null ? (opts as LookupOptions) : {};
    const all = o.all === true;
    const host = normalizeName(hostname);
    const fail = (message: string) => cb(new DestinationBlockedError(message), all ? [] : "", 0);
    if (nameMatches(denied, host)) return fail(`host ${host} is denied (JOBQUEUE_DENIED_HOSTS)`);
    resolve(host).then(
      (addresses) => {
        if (addresses.length === 0) {
          const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${host}`);
          err.code = "ENOTFOUND";
          return cb(err, all ? [] : "", 0);
        }
        // Every address must pass: a name with one private address among public ones is refused.
        const byName = nameMatches(allowed, host);
        for (const a of addresses) {
          const refusal = addressRefusal(a.address, byName);
          if (refusal) return fail(`host ${host} resolves to ${a.address}, which ${refusal}`);
        }
        if (all) return cb(null, addresses);
        const wanted = o.family === 4 || o.family === 6 ? o.family : 0;
        const first = addresses.find((a) => wanted === 0 || a.family === wanted) ?? addresses[0]!;
        cb(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => cb(err, all ? [] : "", 0),
    );
  }) as LookupFunction;

  return {
    refuse(url) {
      const key = url.hostname;
      const known = verdicts.get(key);
      if (known !== undefined) return known;
      const verdict = refuseHost(hostOf(url));
      if (verdicts.size >= 10_000) verdicts.clear();
      verdicts.set(key, verdict);
      return verdict;
    },
    lookup,
  };
}

const ALLOW_HINT = "only public destinations are allowed unless listed in JOBQUEUE_ALLOWED_HOSTS";

interface LookupOptions {
  all?: boolean;
  family?: number | string;
}

/** A host name as the policy compares it: lowercase, without the root label's trailing dot. */
function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function osResolve(hostname: string): Promise<{ address: string; family: number }[]> {
  return new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) =>
      err ? reject(err) : resolve(addresses),
    );
  });
}

/** The URL's host as the policy sees it: lowercase, IPv6 without brackets, no trailing dot. */
function hostOf(url: URL): string {
  const h = url.hostname.toLowerCase();
  return h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : normalizeName(h);
}

/** Parses one JOBQUEUE_ALLOWED_HOSTS / JOBQUEUE_DENIED_HOSTS entry; throws on nonsense. */
export function parseHostPattern(raw: string): HostPattern {
  const entry = raw.trim().toLowerCase();
  if (entry.includes("/")) {
    const cidr = parseCidr(entry);
    if (!cidr) throw new Error(`${JSON.stringify(raw)} is not a valid CIDR`);
    return { kind: "cidr", cidr };
  }
  const bare = entry.startsWith("[") && entry.endsWith("]") ? entry.slice(1, -1) : entry;
  const ip = parseIp(bare);
  if (ip) return { kind: "cidr", cidr: { bytes: ip, prefix: ip.length * 8 } };
  const wildcard = entry.startsWith("*.");
  const name = wildcard ? entry.slice(2) : entry;
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$/.test(name)) {
    throw new Error(`${JSON.stringify(raw)} is not a host name, IP or CIDR`);
  }
  return { kind: "name", name: name.replace(/\.$/, ""), wildcard };
}

function parseCidr(text: string): Cidr | null {
  const [addr, len] = text.split("/");
  const bytes = parseIp(addr ?? "");
  if (!bytes || len === undefined || !/^\d+$/.test(len)) return null;
  const prefix = Number(len);
  if (prefix > bytes.length * 8) return null;
  return { bytes, prefix };
}

function inCidr(bytes: Bytes, cidr: Cidr): boolean {
  if (bytes.length !== cidr.bytes.length) return false;
  let bits = cidr.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[i]! & mask) !== (cidr.bytes[i]! & mask)) return false;
  }
  return true;
}

/** An IP address as 4 or 16 bytes, or null. Only canonical dotted-quad IPv4 (what URL and DNS give). */
export function parseIp(text: string): Bytes | null {
  const family = isIP(text);
  if (family === 4) return text.split(".").map(Number);
  if (family !== 6) return null;
  let s = text.toLowerCase();
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  let tail: Bytes = [];
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    tail = s
      .slice(lastColon + 1)
      .split(".")
      .map(Number);
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const [head, rest] = s.split("::") as [string, string | undefined];
  const groups = (part: string) =>
    part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const fill = rest === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...new Array(fill).fill(0), ...right];
  const bytes = all.flatMap((g) => [(g >> 8) & 0xff, g & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes.length === 16 ? bytes : null;
}
