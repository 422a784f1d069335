import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Suites that need tools outside Node (protoc, Python): `npm run test:interop`.
    exclude: [...configDefaults.exclude, "test/interop/**"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Each test owns its world (SQLite file, target server, ephemeral port): files run in parallel.
    fileParallelism: true,
  },
});
