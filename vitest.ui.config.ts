import { defineConfig } from "vitest/config";

/**
 * `npm run test:ui` (test/ui/run.sh): the dashboard in Debian's chromium, driven by playwright-core,
 * against a real server. Needs the browser and the built dashboard, so it has its own script; CI
 * runs it too.
 */
export default defineConfig({
  test: {
    include: ["test/ui/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    fileParallelism: false,
  },
});
