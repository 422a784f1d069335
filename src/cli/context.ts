import type { Command } from "commander";
import { type Api, type Apis, createApi, DEFAULT_SERVER, type QueuesApi } from "./client.js";
import { CliError, EXIT } from "./exit-codes.js";
import { createOutput, type Format, type Output } from "./output.js";

/** What every command gets: the API client (made on first use), the output, the format asked. */
export interface Context {
  readonly server: string;
  api(): Api;
  /** The QueueService client. */
  queues(): QueuesApi;
  readonly o: Output;
}

/** The global options (`--server`, `--api-key`, `--no-color`) of the program a command runs in. */
export function contextOf(command: Command): Context {
  const opts = command.optsWithGlobals<{ server?: string; apiKey?: string; color?: boolean }>();
  const server = opts.server ?? process.env.JOBQUEUE_SERVER ?? DEFAULT_SERVER;
  const apiKey = opts.apiKey ?? process.env.JOBQUEUE_API_KEY;
  let apis: Apis | null = null;
  const clients = () => {
    apis ??= createApi(server, apiKey || undefined);
    return apis;
  };
  return {
    server,
    api: () => clients().jobs,
    queues: () => clients().queues,
    o: createOutput(opts.color === false ? { color: false } : {}),
  };
}

export function formatOf(
  value: string | undefined,
  allowed: Format[] = ["table", "json", "jsonl"],
): Format {
  const f = (value ?? "table") as Format;
  if (!allowed.includes(f)) {
    throw new CliError(`--output: use one of ${allowed.join(", ")}`, EXIT.usage);
  }
  return f;
}
