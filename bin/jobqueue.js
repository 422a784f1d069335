#!/usr/bin/env node
// The `jobqueue` command (src/cli/main.ts), run from its TypeScript source through tsx.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
