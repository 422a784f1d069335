import { defineConfig } from "vitest/config";

/**
 * `npm run test:cluster`: several server processes on one PostgreSQL database (crash, cancel across
 * nodes, leader failover, limits across nodes, PostgreSQL restarted under load). Slower than the
 * default run, so it has its own script; CI runs it too.
 */
export default defineConfig({
  test: {
    include: ["test/cluster/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 60_000,
    pool: "forks",
    fileParallelism: false,
  },
});
