import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Suites that install or run tools outside Node (Debian's protoc, Python): `npm run test:interop`.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/interop/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 900_000,
    pool: "forks",
  },
});
