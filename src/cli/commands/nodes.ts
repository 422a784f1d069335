import type { Command } from "commander";
import { NodeSchema } from "../../../gen/jobqueue/v1/job_pb.js";
import { contextOf, formatOf } from "../context.js";
import { restJson, table, time, writeJson } from "../output.js";

/** `nodes`: the nodes serving from the store (ListNodes). */
export function registerNodes(program: Command): void {
  program
    .command("nodes")
    .description("list the nodes serving from the store")
    .option("-o, --output <format>", "table, json or jsonl", "table")
    .action(async (opts: { output: string }, cmd: Command) => {
      const { api, o } = contextOf(cmd);
      const format = formatOf(opts.output);
      const { nodes } = await api().listNodes({});
      if (format !== "table")
        return writeJson(
          o,
          format,
          nodes.map((n) => restJson(NodeSchema, n)),
        );
      o.out(
        table(o, nodes, [
          { title: "NODE", value: (n) => n.nodeId },
          { title: "LEADER", value: (n) => (n.leader ? "yes" : "") },
          { title: "IN FLIGHT", value: (n) => `${n.inFlight}/${n.concurrency}` },
          { title: "VERSION", value: (n) => n.version },
          { title: "STARTED", value: (n) => time(n.startedAt) },
          { title: "HEARTBEAT", value: (n) => time(n.heartbeatAt) },
        ]),
      );
    });
}
