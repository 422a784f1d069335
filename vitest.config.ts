import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Suites with their own scripts: tools outside Node (protoc, Python: `npm run test:interop`),
    // several processes and a PostgreSQL server of their own (`npm run test:cluster`), the dashboard
    // in a browser (`npm run test:ui`), the server under abuse (`npm run test:reliability`).
    exclude: [
      ...configDefaults.exclude,
      "test/interop/**",
      "test/cluster/**",
      "test/ui/**",
      "test/reliability/**",
    ],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Each test owns its world (SQLite file, target server, ephemeral port): files run in parallel.
    fileParallelism: true,
  },
});
