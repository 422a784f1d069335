import type { Clock } from "../job/clock.js";

export interface AuthFailureThrottleOptions {
  clock: Clock;
  /** Failed authentications one address may make in a window before it is refused; 0: no limit. */
  limit: number;
  /** The window, in ms (a minute). */
  windowMs?: number;
  /** Addresses tracked at once; further ones are not throttled until the next window. */
  maxAddresses?: number;
}

/**
 * Slows an address that keeps failing authentication: after `limit` failures in a window (a
 * fixed minute), its calls are refused until the window ends, without checking their key or
 * writing anything. Memory is bounded by `maxAddresses` (counts start over each window).
 */
export interface AuthFailureThrottle {
  /** Seconds the address must wait, or 0 if it may call. */
  retryAfter(address: string | null): number;
  failed(address: string | null): void;
}

export function createAuthFailureThrottle(
  options: AuthFailureThrottleOptions,
): AuthFailureThrottle {
  const { clock, limit } = options;
  const windowMs = options.windowMs ?? 60_000;
  const maxAddresses = options.maxAddresses ?? 10_000;
  let window = -1;
  let failures = new Map<string, number>();

  function roll(now: number) {
    const current = Math.floor(now / windowMs);
    if (current !== window) {
      window = current;
      failures = new Map();
    }
  }

  return {
    retryAfter(address) {
      if (limit === 0 || failures.size === 0) return 0;
      const now = clock.now();
      roll(now);
      if ((failures.get(address ?? "") ?? 0) < limit) return 0;
      return Math.max(1, Math.ceil(((window + 1) * windowMs - now) / 1000));
    },
    failed(address) {
      if (limit === 0) return;
      roll(clock.now());
      const key = address ?? "";
      const n = failures.get(key);
      if (n === undefined && failures.size >= maxAddresses) return;
      failures.set(key, (n ?? 0) + 1);
    },
  };
}
