import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Several processes and a PostgreSQL server of their own: `npm run test:cluster`. The
    // dashboard in a browser: `npm run test:ui`.
    exclude: ["test/cluster/**", "test/ui/**", "node_modules/**"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Each test owns its world (SQLite file, target server, ephemeral port): files run in parallel.
    fileParallelism: true,
  },
});
