import type { Logger } from "pino";
import type { JobStore } from "../store/job-store.js";
import type { Service } from "./periodic-service.js";

export interface LeaderElectorOptions {
  store: JobStore;
  logger: Logger;
  /** This node's id. */
  node: string;
  /** How long a term lasts unrenewed: another node takes over at most this long after a death. */
  ttlMs: number;
  /** The services only the leader runs: started on election, stopped on losing it. */
  services: Service[];
}

export interface LeaderElector extends Service {
  readonly isLeader: boolean;
}

/**
 * Elects one node to run the maintenance services (lease rescue, promotion of scheduled jobs, TTL
 * and audit cleanup). Every node tries every third of the term; the leader renews its term at the
 * same pace, and another node takes over once a term runs out unrenewed (the leader died or lost
 * the database) or at once when the leader resigns (a clean stop). A leader that cannot renew
 * stops its services before its term could have passed to another node. The services are safe
 * to overlap for a moment anyway: each of their writes is checked by the store (a rescue takes a
 * lease only once, a promotion or a deletion is idempotent).
 */
export function createLeaderElector(options: LeaderElectorOptions): LeaderElector {
  const { store, logger, node, ttlMs } = options;
  const intervalMs = Math.max(50, Math.floor(ttlMs / 3));
  let leader = false;
  let running = false;
  let timer: NodeJS.Timeout | null = null;
  let attempt: Promise<void> = Promise.resolve();
  let unsubscribe: (() => void) | null = null;

  async function becomeFollower(reason: string) {
    if (!leader) return;
    leader = false;
    logger.warn({ node, reason }, "no longer the maintenance leader");
    await Promise.all(options.services.map((s) => s.stop()));
  }

  async function tryElect() {
    let elected: boolean;
    try {
      elected = await store.leaderAttemptElect({ node, ttlMs });
    } catch (err) {
      await becomeFollower(`the election could not be recorded: ${(err as Error).message}`);
      return;
    }
    if (!running) return;
    if (elected && !leader) {
      leader = true;
      logger.info({ node }, "elected maintenance leader");
      for (const s of options.services) s.start();
    } else if (!elected && leader) {
      await becomeFollower("another node holds the term");
    }
  }

  function schedule() {
    if (!running) return;
    timer = setTimeout(() => {
      attempt = tryElect().finally(schedule);
    }, intervalMs);
  }

  return {
    get isLeader() {
      return leader;
    },
    start() {
      if (running) return;
      running = true;
      unsubscribe = store.signals.onLeaderResigned(() => {
        if (!running || leader) return;
        if (timer) clearTimeout(timer);
        attempt = attempt.then(tryElect).finally(schedule);
      });
      attempt = tryElect().finally(schedule);
    },
    async stop() {
      if (!running) return;
      running = false;
      unsubscribe?.();
      if (timer) clearTimeout(timer);
      await attempt;
      if (leader) {
        await becomeFollower("stopping");
        await store.leaderResign({ node }).catch((err: Error) => {
          logger.warn(
            { err: err.message },
            "could not resign the leadership; it expires by itself",
          );
        });
      }
    },
  };
}
