import type { Api } from "../api/client.js";
import { ErrorNote, LiveNote } from "../components/bits.js";
import { NodesTable } from "../components/nodes-table.js";
import { usePoll } from "../live/poll.js";

/** The nodes serving from the store, refreshed while visible. */
export function NodesPage(props: { api: Api }) {
  const nodes = usePoll((signal) => props.api.listNodes({}, { signal }), "nodes");
  return (
    <>
      <div class="page-head">
        <h1>Nodes</h1>
        <LiveNote live={nodes.live} updatedAt={nodes.updatedAt} />
      </div>
      <ErrorNote error={nodes.error} what="Nodes could not be read" />
      {nodes.data && <NodesTable nodes={nodes.data.nodes} />}
      <p class="muted">
        A node counts as alive for three heartbeats. With SQLite there is one; several processes
        share a PostgreSQL database, one of them the leader that runs the maintenance services.
      </p>
    </>
  );
}
