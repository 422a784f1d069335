import { scale } from "./harness.js";

/**
 * The seeded fuzzer of test/e2e/fuzz.test.ts (every protocol and encoding, zero 5xx, no stack in
 * the log), run large: 20,000 inputs with seed 77 (5,000 in the bounded run). JOBQUEUE_FUZZ_RUNS
 * and JOBQUEUE_FUZZ_SEED, when set, win.
 */
process.env.JOBQUEUE_FUZZ_RUNS ??= String(scale(20_000, 5_000));
process.env.JOBQUEUE_FUZZ_SEED ??= "77";
await import("../e2e/fuzz.test.js");
