import type { Node } from "../../../gen/jobqueue/v1/job_pb.js";
import { Time } from "./bits.js";

/** The nodes serving from the store (ListNodes): one with SQLite, several on PostgreSQL. */
export function NodesTable(props: { nodes: Node[] }) {
  if (props.nodes.length === 0) return <p class="muted">No node has sent a heartbeat recently.</p>;
  return (
    <div class="overflow-auto">
      <table class="striped nodes">
        <caption class="visually-hidden">Nodes</caption>
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">Calls in flight</th>
            <th scope="col">Leader</th>
            <th scope="col" class="wide-only">
              Version
            </th>
            <th scope="col" class="wide-only">
              Started
            </th>
            <th scope="col">Heartbeat</th>
          </tr>
        </thead>
        <tbody>
          {props.nodes.map((n) => (
            <tr key={n.nodeId}>
              <td>
                <code>{n.nodeId}</code>
              </td>
              <td>
                <meter
                  min={0}
                  max={Math.max(1, n.concurrency)}
                  value={n.inFlight}
                  aria-label={`${n.inFlight} of ${n.concurrency} calls in flight`}
                />{" "}
                {n.inFlight} / {n.concurrency}
              </td>
              <td>{n.leader ? "yes" : "no"}</td>
              <td class="wide-only">{n.version}</td>
              <td class="wide-only">
                <Time ts={n.startedAt} />
              </td>
              <td>
                <Time ts={n.heartbeatAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
