import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Several processes and a PostgreSQL server of their own: `npm run test:cluster`; the server
    // under abuse: `npm run test:reliability`.
    exclude: ["test/cluster/**", "test/reliability/**", "node_modules/**"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Each test owns its world (SQLite file, target server, ephemeral port): files run in parallel.
    fileParallelism: true,
  },
});
