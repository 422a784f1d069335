import { describe, expect, it } from "vitest";
import {
  type BucketLimits,
  bucketOf,
  createLimitResolver,
  parseHostLimits,
} from "../../src/job/rate-limits.js";

/** The limits JOBQUEUE_HOST_LIMITS=`raw` gives `bucket`. */
function limitsOf(raw: string, bucket: string): BucketLimits | null {
  const resolve = createLimitResolver(parseHostLimits(raw));
  if (!resolve) throw new Error(`${JSON.stringify(raw)} holds no rule`);
  return resolve(bucket);
}

const limits = (l: Partial<BucketLimits>): BucketLimits => ({
  concurrency: null,
  intervalMs: null,
  burst: 1,
  ...l,
});

describe("parseHostLimits: syntax", () => {
  it.each([
    ["n/s", "api.example.com=10/s", limits({ intervalMs: 100 })],
    ["n/m", "api.example.com=1/m", limits({ intervalMs: 60_000 })],
    ["a fractional rate", "api.example.com=0.5/s", limits({ intervalMs: 2000 })],
    ["concurrency=n", "api.example.com=concurrency=2", limits({ concurrency: 2 })],
    ["burst=n with a rate", "api.example.com=5/s;burst=3", limits({ intervalMs: 200, burst: 3 })],
    [
      "every limit at once, in any order",
      "api.example.com=concurrency=4;burst=2;20/s",
      limits({ concurrency: 4, intervalMs: 50, burst: 2 }),
    ],
    [
      "spaces around rules, limits and the pattern",
      "  api.example.com = 10/s ; concurrency=2  ,  ",
      limits({ concurrency: 2, intervalMs: 100 }),
    ],
    [
      "the README's example, first rule",
      "api.example.com=10/s;concurrency=2,*.slow.io=1/s",
      limits({ concurrency: 2, intervalMs: 100 }),
    ],
  ])("reads %s", (_what, raw, expected) => {
    expect(limitsOf(raw, "api.example.com")).toEqual(expected);
  });

  it("reads the README's example, second rule", () => {
    expect(limitsOf("api.example.com=10/s;concurrency=2,*.slow.io=1/s", "a.slow.io")).toEqual(
      limits({ intervalMs: 1000 }),
    );
  });

  it("reads several rules and ignores empty ones", () => {
    expect(parseHostLimits("a.com=1/s,,b.com=2/s,")).toHaveLength(2);
  });

  it("an empty setting is no rules, and no resolver at all (claims skip the limit checks)", () => {
    expect(parseHostLimits("")).toEqual([]);
    expect(parseHostLimits(" , ")).toEqual([]);
    expect(createLimitResolver([])).toBeUndefined();
  });

  it.each([
    ["no =", "api.example.com", /rule "api.example.com": expected <pattern>=<limit>/],
    ["no pattern", "=10/s", /rule "=10\/s": expected <pattern>=<limit>/],
    ["no limit", "api.example.com=", /rule "api.example.com=": unknown limit ""/],
    ["a zero rate", "api.example.com=0/s", /rule "api.example.com=0\/s": a rate must be above 0/],
    ["a rate per hour", "api.example.com=10/h", /unknown limit "10\/h"; use n\/s, n\/m/],
    ["a negative rate", "api.example.com=-1/s", /unknown limit "-1\/s"/],
    ["concurrency 0", "api.example.com=concurrency=0", /concurrency must be at least 1/],
    ["burst 0", "api.example.com=1/s;burst=0", /burst must be at least 1/],
    ["an unknown limit", "api.example.com=10/s;parallel=2", /unknown limit "parallel=2"/],
    [
      "a bad second rule, named as written",
      "a.com=1/s, b.com=fast",
      /rule "b.com=fast": unknown limit "fast"/,
    ],
  ])("refuses %s, naming the rule", (_what, raw, message) => {
    expect(() => parseHostLimits(raw)).toThrow(message);
  });
});

describe("createLimitResolver: matching", () => {
  it.each([
    // [pattern, bucket, matches]
    ["api.example.com", "api.example.com", true],
    ["api.example.com", "API.Example.COM", true],
    ["API.EXAMPLE.com", "api.example.com", true],
    ["api.example.com", "example.com", false],
    ["api.example.com", "xapi.example.com", false],
    ["api.example.com", "api.example.com.evil.io", false],
    ["127.0.0.1", "127.0.0.1", true],
    ["127.0.0.1", "127.0.0.10", false],
    // *.suffix: any subdomain, at any depth, but not the bare domain
    ["*.slow.io", "a.slow.io", true],
    ["*.slow.io", "a.b.slow.io", true],
    ["*.slow.io", "slow.io", false],
    ["*.slow.io", "aslow.io", false],
    ["*.slow.io", "a.slow.io.example.com", false],
    // globs: * is any run of characters; everything else is literal
    ["api-*.example.com", "api-1.example.com", true],
    ["api-*.example.com", "api-.example.com", true],
    ["api-*.example.com", "api.example.com", false],
    ["a.b*", "a.bcd", true],
    ["a.b*", "axbcd", false],
    ["10.0.*.*", "10.0.3.4", true],
    ["10.0.*.*", "10.1.3.4", false],
    ["*", "anything.at.all", true],
    ["*", "a-rate-limit-key", true],
    ["(a|b)+.com", "(a|b)+.com", true],
    ["(a|b)+.com", "a.com", false],
    ["[::1]", "[::1]", true],
    // rate_limit_key buckets match rules like host names do
    ["shared", "shared", true],
    ["shared", "shared-2", false],
    ["tenant-*", "tenant-42", true],
  ])("%s against %s: %s", (pattern, bucket, matches) => {
    const got = limitsOf(`${pattern}=concurrency=1`, bucket);
    expect(got).toEqual(matches ? limits({ concurrency: 1 }) : null);
  });

  it("the first matching rule wins, whole: later rules are not merged in", () => {
    const specificFirst = "api.example.com=concurrency=1,*.example.com=10/s,*=1/m";
    expect(limitsOf(specificFirst, "api.example.com")).toEqual(limits({ concurrency: 1 }));
    expect(limitsOf(specificFirst, "www.example.com")).toEqual(limits({ intervalMs: 100 }));
    expect(limitsOf(specificFirst, "other.org")).toEqual(limits({ intervalMs: 60_000 }));

    const wildcardFirst = "*.example.com=10/s,api.example.com=concurrency=1";
    expect(limitsOf(wildcardFirst, "api.example.com")).toEqual(limits({ intervalMs: 100 }));
  });

  it("a bucket no rule matches has no limits (null)", () => {
    expect(limitsOf("api.example.com=1/s", "other.example.com")).toBeNull();
  });
});

describe("bucketOf", () => {
  // The host comes from the job's URL, in lowercase (validateEnqueue; test/job/validate.test.ts).
  it.each([
    ["api.example.com", null, "api.example.com"],
    ["127.0.0.1", null, "127.0.0.1"],
    ["[::1]", null, "[::1]"],
    // A rate_limit_key replaces the host, as given: jobs to any host share the key's budget.
    ["api.example.com", "shared", "shared"],
    ["other.example.org", "shared", "shared"],
    // Keys are case-insensitive, like host names.
    ["api.example.com", "Shared", "shared"],
  ])("host %s with key %s is %s", (host, key, bucket) => {
    expect(bucketOf(host, key)).toBe(bucket);
  });
});
