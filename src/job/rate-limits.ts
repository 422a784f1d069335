/**
 * Per-destination budgets (JOBQUEUE_HOST_LIMITS). A job's bucket is its `rate_limit_key`, or the
 * host of its URL; the first rule whose pattern matches the bucket applies.
 *
 * Syntax: rules separated by commas, each `<pattern>=<limit>[;<limit>...]` where a limit is
 * `<n>/s`, `<n>/m` (calls per second or minute, evenly spaced), `burst=<n>` (calls that may go at
 * once before the spacing applies) or `concurrency=<n>` (calls in flight at most). Patterns are
 * names, `*.example.com` (any subdomain) or globs with `*`.
 * Example: `api.example.com=10/s;concurrency=2,*.slow.io=1/s`.
 */
export interface BucketLimits {
  /** Calls in flight at most, or null for no bound. */
  concurrency: number | null;
  /** Spacing between calls (1000/n for n/s), or null for no rate. */
  intervalMs: number | null;
  /** Calls that may start back to back before the spacing applies (1: strictly spaced). */
  burst: number;
}

export type LimitResolver = (bucket: string) => BucketLimits | null;

interface Rule {
  match: (bucket: string) => boolean;
  limits: BucketLimits;
}

/** Parses JOBQUEUE_HOST_LIMITS; throws a message naming the faulty rule. */
export function parseHostLimits(raw: string): Rule[] {
  const rules: Rule[] = [];
  for (const part of raw.split(",")) {
    const text = part.trim();
    if (text === "") continue;
    const eq = text.indexOf("=");
    if (eq <= 0) throw new Error(`rule ${JSON.stringify(text)}: expected <pattern>=<limit>`);
    const pattern = text.slice(0, eq).trim().toLowerCase();
    const limits: BucketLimits = { concurrency: null, intervalMs: null, burst: 1 };
    for (const spec of text
      .slice(eq + 1)
      .split(";")
      .map((s) => s.trim())) {
      const rate = /^(\d+(?:\.\d+)?)\/(s|m)$/.exec(spec);
      const concurrency = /^concurrency=(\d+)$/.exec(spec);
      const burst = /^burst=(\d+)$/.exec(spec);
      if (rate) {
        const n = Number(rate[1]);
        if (n <= 0) throw new Error(`rule ${JSON.stringify(text)}: a rate must be above 0`);
        limits.intervalMs = (rate[2] === "s" ? 1000 : 60_000) / n;
      } else if (concurrency) {
        limits.concurrency = Number(concurrency[1]);
        if (limits.concurrency < 1) {
          throw new Error(`rule ${JSON.stringify(text)}: concurrency must be at least 1`);
        }
      } else if (burst) {
        limits.burst = Number(burst[1]);
        if (limits.burst < 1) {
          throw new Error(`rule ${JSON.stringify(text)}: burst must be at least 1`);
        }
      } else {
        throw new Error(
          `rule ${JSON.stringify(text)}: unknown limit ${JSON.stringify(spec)}; use n/s, n/m, burst=n or concurrency=n`,
        );
      }
    }
    rules.push({ match: patternMatcher(pattern), limits });
  }
  return rules;
}

function patternMatcher(pattern: string): (bucket: string) => boolean {
  if (pattern.startsWith("*.") && !pattern.slice(2).includes("*")) {
    const suffix = pattern.slice(1);
    return (b) => b.endsWith(suffix);
  }
  if (pattern.includes("*")) {
    const re = new RegExp(
      `^${pattern
        .split("*")
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
        .join(".*")}$`,
    );
    return (b) => re.test(b);
  }
  return (b) => b === pattern;
}

/** The limits of a bucket: the first matching rule's, or null when none matches. */
export function createLimitResolver(rules: Rule[]): LimitResolver | undefined {
  if (rules.length === 0) return undefined;
  return (bucket) => rules.find((r) => r.match(bucket.toLowerCase()))?.limits ?? null;
}

/**
 * The bucket a job's calls count against: its rate limit key or its URL's host name, in lowercase
 * (keys are case-insensitive, like host names; a key equal to a host name shares its budget).
 */
export function bucketOf(host: string, rateLimitKey: string | null): string {
  return (rateLimitKey ?? host).toLowerCase();
}
