import { SETTINGS } from "./config.js";

/** What the server's command line asks for. */
export type ServerArgs =
  | { action: "run" }
  | { action: "help" }
  | { action: "version" }
  | { action: "error"; message: string };

/**
 * Reads the server's arguments: it takes none but `--help` (`-h`) and `--version` (`-v`); all its
 * settings are environment variables.
 */
export function parseServerArgs(argv: string[]): ServerArgs {
  if (argv.length === 0) return { action: "run" };
  const [first] = argv;
  if (argv.length === 1 && (first === "--help" || first === "-h")) return { action: "help" };
  if (argv.length === 1 && (first === "--version" || first === "-v")) return { action: "version" };
  return {
    action: "error",
    message: `unexpected argument ${JSON.stringify(first)}: the server is configured with JOBQUEUE_* environment variables (see --help)`,
  };
}

/** The `--help` text: what the server is, how to run it, and every setting with its default. */
export function usage(version: string): string {
  const width = Math.max(...SETTINGS.map((s) => s.env.length));
  const rows = SETTINGS.map((s) => {
    const def = s.default === "" ? "(empty)" : s.default;
    return `  ${s.env.padEnd(width)}  default ${def}`;
  });
  return [
    `jobqueue ${version}: durable HTTP-call jobs over gRPC, gRPC-Web, Connect and REST on one port`,
    "",
    "Usage:",
    "  npm start                 build if needed, then run the server",
    "  node dist/src/main.js     run the built server",
    "  node dist/src/main.js --help | --version",
    "",
    "Settings are environment variables, checked at start-up (the README describes each):",
    ...rows,
    "",
    "Logs are JSON lines on stdout. SIGTERM or SIGINT stops the server gracefully.",
    "",
  ].join("\n");
}
