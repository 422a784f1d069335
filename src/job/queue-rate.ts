/**
 * A queue's rate across all nodes (GCRA without reservations): a claim takes as many of the
 * queue's jobs as the budget allows now and advances the queue's clock by that many slots; the
 * rest stay available and the next claim after the next free slot takes them. Pure: the store
 * reads the clock (`tat`, null for a queue never called), asks, and writes the new one.
 */
export function queueBudget(
  tat: number | null,
  rate: { intervalMs: number; burst: number },
  now: number,
  wanted: number,
): { allowed: number; tat: number; nextSlotAt: number | null } {
  const tolerance = (rate.burst - 1) * rate.intervalMs;
  const start = Math.max(tat ?? now, now);
  // Slots free now: those whose time is within the tolerance of now.
  const free = Math.max(0, Math.floor((now + tolerance - start) / rate.intervalMs) + 1);
  const allowed = Math.min(wanted, free);
  const next = start + allowed * rate.intervalMs;
  return {
    allowed,
    tat: Math.ceil(next),
    nextSlotAt: allowed < wanted ? Math.ceil(next - tolerance) : null,
  };
}
