import { describe, expect, it } from "vitest";
import { percentile, slowestDestinations, summarizeLatency } from "../../src/job/latency.js";

describe("latency", () => {
  it.each([
    // sorted values, p, nearest rank
    [[10], 50, 10],
    [[10], 99, 10],
    [[10, 20], 50, 10],
    [[10, 20], 90, 20],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, 5],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99, 10],
    [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 100, 10],
  ])("percentile of %j at p%d is %d (nearest rank)", (sorted, p, expected) => {
    expect(percentile(sorted, p)).toBe(expected);
  });

  it("has no percentile and no summary of nothing", () => {
    expect(percentile([], 50)).toBeNull();
    expect(summarizeLatency([])).toBeNull();
  });

  it("sums up durations given in any order", () => {
    const durations = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1
    expect(summarizeLatency(durations)).toEqual({
      samples: 100,
      p50Ms: 50,
      p90Ms: 90,
      p99Ms: 99,
      maxMs: 100,
    });
  });

  it("lists the slowest destinations by p90, leaving out hosts with too few calls", () => {
    const rows = [
      ...[100, 110, 120].map((d) => ({ host: "fast.test", durationMs: d })),
      ...[900, 950, 1000].map((d) => ({ host: "slow.test", durationMs: d })),
      ...[500, 5000].map((d) => ({ host: "mixed.test", durationMs: d })),
      { host: "once.test", durationMs: 60_000 },
    ];
    const slowest = slowestDestinations(rows, { limit: 2, minSamples: 2 });
    expect(slowest.map((d) => [d.host, d.p90Ms, d.samples])).toEqual([
      ["mixed.test", 5000, 2],
      ["slow.test", 1000, 3],
    ]);
    expect(slowestDestinations(rows, { limit: 10 }).map((d) => d.host)).toEqual([
      "once.test",
      "mixed.test",
      "slow.test",
      "fast.test",
    ]);
  });
});
