import { describe, expect, it } from "vitest";
import { createAuthFailureThrottle } from "../../src/auth/auth-failures.js";

describe("the auth failure throttle", () => {
  it("refuses an address after `limit` failures until the minute ends, then lets it try again", () => {
    let now = 120_000 + 15_000;
    const throttle = createAuthFailureThrottle({ clock: { now: () => now }, limit: 3 });
    for (let i = 0; i < 3; i++) {
      expect(throttle.retryAfter("10.0.0.1")).toBe(0);
      throttle.failed("10.0.0.1");
    }
    expect(throttle.retryAfter("10.0.0.1")).toBe(45);
    expect(throttle.retryAfter("10.0.0.2")).toBe(0);
    now += 44_500;
    expect(throttle.retryAfter("10.0.0.1")).toBe(1);
    now += 500;
    expect(throttle.retryAfter("10.0.0.1")).toBe(0);
  });

  it("does nothing with a limit of 0, and tracks at most maxAddresses", () => {
    const off = createAuthFailureThrottle({ clock: { now: () => 0 }, limit: 0 });
    for (let i = 0; i < 10; i++) off.failed("a");
    expect(off.retryAfter("a")).toBe(0);
    const bounded = createAuthFailureThrottle({
      clock: { now: () => 0 },
      limit: 1,
      maxAddresses: 2,
    });
    for (const a of ["a", "b", "c"]) bounded.failed(a);
    expect([bounded.retryAfter("a"), bounded.retryAfter("b"), bounded.retryAfter("c")]).toEqual([
      60, 60, 0,
    ]);
  });
});
