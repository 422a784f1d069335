import { defineConfig } from "vitest/config";

/**
 * `npm run test:reliability`: the real server under abuse (kill -9 soak, hostile targets with its
 * memory sampled, the fuzzer at length, storage faults on a tmpfs and injected I/O errors, an
 * unauthenticated flood, 200 clients at once). Long, so it has its own script; CI runs its
 * bounded form (`npm run test:reliability:ci`, JOBQUEUE_RELIABILITY=ci).
 */
export default defineConfig({
  test: {
    include: ["test/reliability/**/*.test.ts"],
    testTimeout: 600_000,
    hookTimeout: 60_000,
    pool: "forks",
    // One at a time: the runs measure the server (its memory, its errors under load).
    fileParallelism: false,
  },
});
