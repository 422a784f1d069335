import { useState } from "preact/hooks";
import type { Queue } from "../../../gen/jobqueue/v1/queue_service_pb.js";
import { type Api, errorText } from "../api/client.js";
import { type Access, allows } from "../api/session.js";
import { ErrorNote, LiveNote, Section, Time } from "../components/bits.js";
import { Link } from "../components/link.js";
import { Modal } from "../components/modal.js";
import { usePoll } from "../live/poll.js";
import { useJobEvents } from "../live/watch-jobs.js";
import { countOf } from "./overview.js";

/**
 * The queues (ListQueues) with their settings and what waits in each (GetQueueStats); admins
 * pause and resume them and edit their concurrency, rate and defaults (QueueService). Settings
 * left unset take the node's.
 */
export function QueuesPage(props: { api: Api; access: Access }) {
  const { api, access } = props;
  const list = usePoll(
    async (signal) => {
      const { queues } = await api.queues.listQueues({}, { signal });
      const stats = await Promise.all(
        queues.map((q) =>
          api.queues.getQueueStats({ name: q.name, windowMinutes: 15 }, { signal }),
        ),
      );
      return queues.map((queue, i) => ({ queue, stats: stats[i]! }));
    },
    "queues",
    { intervalMs: 10_000, keepOnNewKey: true },
  );
  const streaming = useJobEvents(api, {}, () => list.refresh(), { coalesceMs: 2_000 });
  const [editing, setEditing] = useState<Queue | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const admin = allows(access, "admin");

  const setPaused = async (q: Queue, paused: boolean) => {
    setBusy(q.name);
    setError(null);
    try {
      if (paused) await api.queues.pauseQueue({ name: q.name });
      else await api.queues.resumeQueue({ name: q.name });
      list.refresh();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  };

  return (
    <>
      <div class="page-head">
        <h1>Queues</h1>
        <LiveNote
          live={list.live && streaming}
          visible={list.live}
          stream
          updatedAt={list.updatedAt}
        />
      </div>
      <ErrorNote error={list.error} what="Queues could not be read" />
      <ErrorNote error={error} />
      {!admin && (
        <p class="muted">
          Only admins change queues; you see their settings and what waits in them.
        </p>
      )}
      {list.data && (
        <div class="overflow-auto">
          <table class="striped queues">
            <caption class="visually-hidden">Queues</caption>
            <thead>
              <tr>
                <th scope="col">Queue</th>
                <th scope="col">State</th>
                <th scope="col" class="num">
                  Queued
                </th>
                <th scope="col" class="num wide-only">
                  Running
                </th>
                <th scope="col" class="num wide-only">
                  Concurrency / node
                </th>
                <th scope="col" class="num wide-only">
                  Rate
                </th>
                <th scope="col" class="wide-only">
                  Defaults
                </th>
                <th scope="col" class="xwide-only">
                  Oldest waiting
                </th>
                {admin && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {list.data.map(({ queue: q, stats }) => (
                <tr key={q.name} data-queue={q.name}>
                  <th scope="row">
                    <Link href={`/jobs?queue=${encodeURIComponent(q.name)}`}>{q.name}</Link>
                  </th>
                  <td>
                    {q.paused ? (
                      <span class="badge paused" data-state="paused">
                        paused
                      </span>
                    ) : (
                      <span class="badge active" data-state="active">
                        active
                      </span>
                    )}
                  </td>
                  <td class="num">{countOf(stats.counts, "queued").toLocaleString("en")}</td>
                  <td class="num wide-only">{stats.running}</td>
                  <td class="num wide-only">
                    {q.concurrency ?? <span class="muted">node's</span>}
                  </td>
                  <td class="num wide-only">
                    {q.ratePerSecond !== undefined ? (
                      `${q.ratePerSecond}/s${q.burst !== undefined ? ` (burst ${q.burst})` : ""}`
                    ) : (
                      <span class="muted">none</span>
                    )}
                  </td>
                  <td class="wide-only">
                    <small>
                      {q.maxAttempts !== undefined
                        ? `${q.maxAttempts} attempts`
                        : "node's attempts"}
                      {q.ttlSeconds !== undefined ? ` · TTL ${q.ttlSeconds} s` : ""}
                    </small>
                  </td>
                  <td class="xwide-only">
                    <Time ts={stats.oldestQueuedAt} />
                  </td>
                  {admin && (
                    <td class="row-actions">
                      <button
                        type="button"
                        class="secondary outline small"
                        data-queue-action={q.paused ? "resume" : "pause"}
                        aria-label={`${q.paused ? "Resume" : "Pause"} queue ${q.name}`}
                        disabled={busy === q.name}
                        aria-busy={busy === q.name}
                        onClick={() => void setPaused(q, !q.paused)}
                      >
                        {q.paused ? "Resume" : "Pause"}
                      </button>
                      <button
                        type="button"
                        class="secondary outline small"
                        data-queue-action="edit"
                        aria-label={`Edit queue ${q.name}`}
                        onClick={() => setEditing(q)}
                      >
                        Edit
                      </button>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Modal open={editing !== null} onClose={() => setEditing(null)} labelledBy="edit-queue-h">
        {editing && (
          <EditQueue
            api={api}
            queue={editing}
            onDone={() => {
              setEditing(null);
              list.refresh();
            }}
            onCancel={() => setEditing(null)}
          />
        )}
      </Modal>
      <Section title="About queues" id="about-queues">
        <p class="muted">
          A paused queue keeps accepting jobs and starts none; calls in flight finish. Concurrency
          applies on each node, the rate to all nodes together. An empty setting takes the node's
          default.
        </p>
      </Section>
    </>
  );
}

function EditQueue(props: { api: Api; queue: Queue; onDone: () => void; onCancel: () => void }) {
  const { api, queue: q } = props;
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    // Empty resets a setting to the node's default (0, as UpdateQueue takes it).
    const num = (name: string) => {
      const v = String(form.get(name) ?? "").trim();
      return v === "" ? 0 : Number(v);
    };
    setBusy(true);
    setError(null);
    try {
      await api.queues.updateQueue({
        name: q.name,
        settings: {
          concurrency: num("concurrency"),
          ratePerSecond: num("rate_per_second"),
          burst: num("burst"),
          maxAttempts: num("max_attempts"),
          ttlSeconds: num("ttl_seconds"),
        },
      });
      const paused = form.get("paused") === "on";
      if (paused !== q.paused) {
        if (paused) await api.queues.pauseQueue({ name: q.name });
        else await api.queues.resumeQueue({ name: q.name });
      }
      props.onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const field = (name: string, label: string, value: number | undefined, step = "1") => (
    <label>
      {label}
      <input
        name={name}
        type="number"
        min="0"
        step={step}
        defaultValue={value === undefined ? "" : String(value)}
        placeholder="node's default"
      />
    </label>
  );
  return (
    <article>
      <h2 id="edit-queue-h">Queue {q.name}</h2>
      <form onSubmit={submit} aria-label={`Settings of queue ${q.name}`}>
        <div class="filter-fields">
          {field("concurrency", "Concurrency on each node", q.concurrency)}
          {field("rate_per_second", "Rate (calls per second, all nodes)", q.ratePerSecond, "any")}
          {field("burst", "Burst", q.burst)}
          {field("max_attempts", "Default max attempts", q.maxAttempts)}
          {field("ttl_seconds", "Default TTL (seconds)", q.ttlSeconds)}
        </div>
        <label>
          <input type="checkbox" name="paused" defaultChecked={q.paused} /> Paused
        </label>
        {error !== null && (
          <p class="error-note" role="alert">
            {errorText(error)}
          </p>
        )}
        <footer>
          <button type="button" class="secondary" onClick={props.onCancel}>
            Cancel
          </button>
          <button type="submit" disabled={busy} aria-busy={busy} data-confirm="save-queue">
            Save
          </button>
        </footer>
      </form>
    </article>
  );
}
