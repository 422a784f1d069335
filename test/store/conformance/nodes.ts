import { describe, expect, it } from "vitest";
import type { NodeBeat } from "../../../src/store/job-store.js";
import { type StoreTest, T0 } from "./harness.js";

const beat = (id: string, inFlight = 0): NodeBeat => ({
  id,
  startedAt: T0 - 1_000,
  version: "1.2.3",
  concurrency: 8,
  inFlight,
});

/** Node heartbeats and the maintenance leader's term. */
export function nodeTests(t: StoreTest): void {
  describe("nodes", () => {
    it("a heartbeat creates the node's row and later ones update it", async () => {
      await t.store.nodeHeartbeat(beat("a", 1));
      t.clock.set(T0 + 1_000);
      await t.store.nodeHeartbeat(beat("a", 5));
      expect(await t.store.nodeList({ withinMs: 10_000 })).toEqual([
        {
          id: "a",
          startedAt: T0 - 1_000,
          heartbeatAt: T0 + 1_000,
          version: "1.2.3",
          concurrency: 8,
          inFlight: 5,
          leader: false,
        },
      ]);
    });

    it("lists only nodes heard from recently, and forgets nodes by id or by silence", async () => {
      await t.store.nodeHeartbeat(beat("old"));
      t.clock.set(T0 + 20_000);
      await t.store.nodeHeartbeat(beat("new"));
      expect((await t.store.nodeList({ withinMs: 15_000 })).map((n) => n.id)).toEqual(["new"]);
      expect((await t.store.nodeList({ withinMs: 60_000 })).map((n) => n.id)).toEqual([
        "new",
        "old",
      ]);
      expect(await t.store.nodeDelete({ silentForMs: 10_000 })).toBe(1);
      expect(await t.store.nodeDelete({ id: "new" })).toBe(1);
      expect(await t.store.nodeList({ withinMs: 60_000 })).toEqual([]);
    });
  });

  describe("leader", () => {
    it("one node holds the term; it renews it; another takes it once it expires", async () => {
      const other = await t.peer();
      expect(await t.store.leaderAttemptElect({ node: "a", ttlMs: 1_000, now: T0 })).toBe(true);
      expect(await other.store.leaderAttemptElect({ node: "b", ttlMs: 1_000, now: T0 + 500 })).toBe(
        false,
      );
      // a renews at T0 + 900: its term now runs to T0 + 1900.
      expect(await t.store.leaderAttemptElect({ node: "a", ttlMs: 1_000, now: T0 + 900 })).toBe(
        true,
      );
      expect(
        await other.store.leaderAttemptElect({ node: "b", ttlMs: 1_000, now: T0 + 1_899 }),
      ).toBe(false);
      expect(
        await other.store.leaderAttemptElect({ node: "b", ttlMs: 1_000, now: T0 + 1_900 }),
      ).toBe(true);
      expect(await t.store.leaderAttemptElect({ node: "a", ttlMs: 1_000, now: T0 + 1_901 })).toBe(
        false,
      );
    });

    it("a resignation frees the term at once; resigning a term one does not hold does nothing", async () => {
      expect(await t.store.leaderAttemptElect({ node: "a", ttlMs: 60_000, now: T0 })).toBe(true);
      await t.store.leaderResign({ node: "b" });
      expect(await t.store.leaderAttemptElect({ node: "b", ttlMs: 60_000, now: T0 + 1 })).toBe(
        false,
      );
      await t.store.leaderResign({ node: "a" });
      expect(await t.store.leaderAttemptElect({ node: "b", ttlMs: 60_000, now: T0 + 2 })).toBe(
        true,
      );
    });

    it("the node list marks the node holding an unexpired term", async () => {
      t.clock.set(T0);
      await t.store.nodeHeartbeat(beat("a"));
      await t.store.nodeHeartbeat(beat("b"));
      await t.store.leaderAttemptElect({ node: "b", ttlMs: 1_000, now: T0 });
      const leaders = async (now: number) =>
        (await t.store.nodeList({ withinMs: 60_000, now }))
          .filter((n) => n.leader)
          .map((n) => n.id);
      expect(await leaders(T0 + 10)).toEqual(["b"]);
      expect(await leaders(T0 + 1_000)).toEqual([]);
    });
  });
}
