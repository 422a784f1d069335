/** How long calls took, summed up: nearest-rank percentiles of a set of durations. */
export interface LatencySummary {
  samples: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** A destination's calls, for the slowest-destinations list. */
export interface DestinationLatency extends LatencySummary {
  host: string;
}

/**
 * The nearest-rank percentile `p` (0 < p ≤ 100) of durations sorted ascending: the smallest value
 * with at least p % of the values at or below it. Null for no values.
 */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/** p50, p90, p99 and the maximum of some durations; null for none. */
export function summarizeLatency(durationsMs: readonly number[]): LatencySummary | null {
  if (durationsMs.length === 0) return null;
  const sorted = [...durationsMs].sort((a, b) => a - b);
  return {
    samples: sorted.length,
    p50Ms: percentile(sorted, 50)!,
    p90Ms: percentile(sorted, 90)!,
    p99Ms: percentile(sorted, 99)!,
    maxMs: sorted[sorted.length - 1]!,
  };
}

/**
 * The destinations whose calls took longest, by their p90 (then their maximum, then name), at most
 * `limit`. Hosts with fewer than `minSamples` calls are left out: one slow call says little.
 */
export function slowestDestinations(
  rows: readonly { host: string; durationMs: number }[],
  options: { limit: number; minSamples?: number },
): DestinationLatency[] {
  const byHost = new Map<string, number[]>();
  for (const r of rows) {
    const list = byHost.get(r.host);
    if (list) list.push(r.durationMs);
    else byHost.set(r.host, [r.durationMs]);
  }
  const out: DestinationLatency[] = [];
  for (const [host, durations] of byHost) {
    if (durations.length < (options.minSamples ?? 1)) continue;
    out.push({ host, ...summarizeLatency(durations)! });
  }
  out.sort((a, b) => b.p90Ms - a.p90Ms || b.maxMs - a.maxMs || (a.host < b.host ? -1 : 1));
  return out.slice(0, options.limit);
}
