import { decodeTime } from "ulid";
import { describe, expect, it } from "vitest";
import { jobIdFactory } from "../../src/job/job-ids.js";

const ID = /^j_[0-9A-HJKMNP-TV-Z]{26}$/;

describe("job ids", () => {
  it("are j_ and a ULID carrying the creation time", () => {
    const id = jobIdFactory()(1_795_000_000_123);
    expect(id).toMatch(ID);
    expect(decodeTime(id.slice(2))).toBe(1_795_000_000_123);
  });

  it("sort in creation order, within a millisecond too, and never repeat", () => {
    const next = jobIdFactory();
    const ids = Array.from({ length: 5000 }, (_, i) => next(1_795_000_000_000 + Math.floor(i / 7)));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("draw their random part evenly from all 32 characters across pool refills", () => {
    const next = jobIdFactory();
    const counts = new Map<string, number>();
    // A new millisecond each time, so every id draws 16 fresh characters (80,000 in all).
    for (let i = 0; i < 5000; i++) {
      for (const c of next(1_795_000_000_000 + i).slice(12))
        counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(counts.size).toBe(32);
    for (const n of counts.values()) expect(Math.abs(n - 2500)).toBeLessThan(400);
  });
});
