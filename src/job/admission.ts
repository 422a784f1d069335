import type { LimitResolver } from "./rate-limits.js";

/**
 * Rate-limit admission: which due jobs a claim may start now, under their buckets' concurrency and
 * rate limits (JOBQUEUE_HOST_LIMITS). Pure: the store driver reads the candidates and the state of
 * their buckets, asks {@link Admission.decide}, and writes what it decided. Every driver runs the
 * same loop:
 *
 * ```
 * const admission = createAdmission({ now, limit, limits });
 * while (admission.wantsMore()) {
 *   const candidates = <available jobs in claim order, admission.fetchSize() of them>;
 *   for (const bucket of admission.unknownBuckets(candidates)) admission.learn(bucket, <its state>);
 *   const round = admission.decide(candidates);
 *   <move round.wait to waiting, reserve round.reserve's slots>
 * }
 * <save admission.changedRates(); claim admission.claimed>
 * ```
 *
 * A job whose bucket is at its concurrency limit moves to waiting (it holds no worker and uses no
 * attempt; a call of its bucket ending promotes it again). One whose bucket's rate budget is spent
 * is rescheduled to the next free slot, which it reserves. A reserved job that then has to wait
 * for concurrency gives its slot up: it runs when a call ends, perhaps long after the slot, and
 * without a fresh check it could call right after another.
 *
 * Rates follow GCRA with two clocks per bucket: `tat`, the next free slot in the plan
 * (reservations move it ahead), and `actualTat`, the next free slot after the calls really made.
 * A new job takes the next planned slot, so it queues behind jobs that reserved earlier; every
 * job, reserved or not, also waits for the actual clock, so reserved slots that come due together
 * (a busy pool, a restart after downtime) are spread out again instead of going out at once.
 */
export interface Admission {
  /** Whether another round could admit more (the limit is not reached, candidates remain). */
  wantsMore(): boolean;
  /** How many candidates the next round should read (the ones already admitted included). */
  fetchSize(): number;
  /** The limited buckets among `candidates` whose state the admission has not been told yet. */
  unknownBuckets(candidates: readonly Candidate[]): string[];
  /**
   * Tells the state of a bucket, or null when the driver could not lock it (another node is
   * admitting jobs of that bucket right now): its candidates are left for a later claim.
   */
  learn(bucket: string, state: BucketState | null): void;
  /** Decides a round; candidates already admitted or decided are skipped. */
  decide(candidates: readonly Candidate[]): AdmissionRound;
  /** The jobs to claim, in claim order. */
  readonly claimed: readonly string[];
  /** The earliest slot reserved, if any was. */
  readonly deferredUntil: number | null;
  /** The rate states to save: buckets whose clocks moved. */
  changedRates(): RateState[];
}

/** An available job, as the claim reads it. */
export interface Candidate {
  id: string;
  bucket: string;
  /** It holds the rate slot it was scheduled for. */
  rateReserved: boolean;
}

/** What the driver knows of a bucket: its calls in flight and its stored rate clocks. */
export interface BucketState {
  running: number;
  /** Null when the bucket has never been called under a rate. */
  tat: number | null;
  actualTat: number | null;
}

export interface RateState {
  bucket: string;
  tat: number;
  actualTat: number;
}

export interface AdmissionRound {
  /** Move to waiting: their bucket is at its concurrency limit. */
  wait: string[];
  /** Schedule at `runAt`, holding that rate slot. */
  reserve: { id: string; runAt: number }[];
}

/** Rounds at most per claim: each reads more candidates when earlier ones were held back. */
const MAX_ROUNDS = 10;

export function createAdmission(params: {
  now: number;
  limit: number;
  limits: LimitResolver;
}): Admission {
  const { now, limit, limits } = params;
  const claimed: string[] = [];
  const decided = new Set<string>();
  const books = new Map<string, Book | null>();
  let deferredUntil: number | null = null;
  let rounds = 0;
  let exhausted = false;

  const fetchSize = () => claimed.length + (limit - claimed.length) * 4;

  function rateSlot(book: Book, rateReserved: boolean, interval: number, tolerance: number) {
    let tat = Math.max(book.tat ?? now, now);
    const actual = Math.max(book.actualTat ?? now, now);
    const save = (nextTat: number, nextActual: number) => {
      book.tat = Math.ceil(Math.max(nextTat, nextActual));
      book.actualTat = Math.ceil(nextActual);
      book.changed = true;
    };
    if (!rateReserved) {
      if (tat - now > tolerance) {
        save(tat + interval, book.actualTat ?? now);
        return Math.ceil(tat - tolerance);
      }
      tat += interval;
    }
    if (actual - now > tolerance) {
      save(tat, book.actualTat ?? now);
      return Math.ceil(actual - tolerance);
    }
    save(tat, actual + interval);
    return null;
  }

  return {
    wantsMore: () => !exhausted && claimed.length < limit && rounds < MAX_ROUNDS,
    fetchSize,
    unknownBuckets(candidates) {
      const unknown = new Set<string>();
      for (const c of candidates) {
        if (!books.has(c.bucket) && limits(c.bucket) !== null) unknown.add(c.bucket);
      }
      return [...unknown].sort();
    },
    learn(bucket, state) {
      books.set(
        bucket,
        state && {
          running: state.running,
          tat: state.tat,
          actualTat: state.actualTat,
          changed: false,
        },
      );
    },
    decide(candidates) {
      rounds++;
      const fetched = fetchSize();
      const round: AdmissionRound = { wait: [], reserve: [] };
      let heldBack = 0;
      for (const c of candidates) {
        if (claimed.length >= limit) break;
        if (decided.has(c.id)) continue;
        const l = limits(c.bucket);
        if (l === null) {
          claimed.push(c.id);
          decided.add(c.id);
          continue;
        }
        const book = books.get(c.bucket);
        if (book === undefined) throw new Error(`bucket ${c.bucket} was not learned`);
        if (book === null) {
          heldBack++;
          continue;
        }
        decided.add(c.id);
        if (l.concurrency !== null && book.running >= l.concurrency) {
          round.wait.push(c.id);
          heldBack++;
          continue;
        }
        if (l.intervalMs !== null) {
          const tolerance = (l.burst - 1) * l.intervalMs;
          const runAt = rateSlot(book, c.rateReserved, l.intervalMs, tolerance);
          if (runAt !== null) {
            round.reserve.push({ id: c.id, runAt });
            deferredUntil = deferredUntil === null ? runAt : Math.min(deferredUntil, runAt);
            heldBack++;
            continue;
          }
        }
        book.running++;
        claimed.push(c.id);
      }
      // Nothing more to find when the candidates ran out or none was held back.
      if (candidates.length < fetched || heldBack === 0) exhausted = true;
      return round;
    },
    get claimed() {
      return claimed;
    },
    get deferredUntil() {
      return deferredUntil;
    },
    changedRates() {
      const out: RateState[] = [];
      for (const [bucket, book] of books) {
        if (book?.changed) out.push({ bucket, tat: book.tat!, actualTat: book.actualTat! });
      }
      return out;
    },
  };
}

interface Book {
  running: number;
  tat: number | null;
  actualTat: number | null;
  changed: boolean;
}
