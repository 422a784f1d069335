import { auditTests } from "./audit.js";
import { callbackTests } from "./callbacks.js";
import { cancelTests } from "./cancel.js";
import { claimTests } from "./claim.js";
import { eventTests } from "./events.js";
import { finishTests } from "./finish.js";
import { describeStore, type StoreDriver } from "./harness.js";
import { insertTests } from "./insert.js";
import { limitTests } from "./limits.js";
import { nodeTests } from "./nodes.js";
import { operateTests } from "./operate.js";
import { raceTests } from "./races.js";
import { readTests } from "./read.js";
import { rescueTests } from "./rescue.js";
import { scheduleTests } from "./schedule.js";
import { scheduleTableTests } from "./schedules.js";
import { statsTests } from "./stats.js";
import { wakeUpTests } from "./wake-ups.js";

/**
 * The behaviour every JobStore driver must have, by area (River's driver tests are the model).
 * Each test gets a fresh database of its own and passes explicit times: nothing reads the wall
 * clock.
 */
export function runStoreConformance(driver: StoreDriver): void {
  describeStore(driver, [
    insertTests,
    readTests,
    claimTests,
    finishTests,
    cancelTests,
    rescueTests,
    scheduleTests,
    limitTests,
    auditTests,
    operateTests,
    eventTests,
    nodeTests,
    wakeUpTests,
    raceTests,
    statsTests,
    callbackTests,
    scheduleTableTests,
  ]);
}

export type { StoreDriver };
