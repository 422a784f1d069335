import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { type Attempt, BodyEncoding, type Job } from "../../../gen/jobqueue/v1/job_pb.js";
import type { GetJobResultResponse } from "../../../gen/jobqueue/v1/job_queue_service_pb.js";
import { JOB_ACTIONS, type JobAction } from "../actions.js";
import { type Api, errorText } from "../api/client.js";
import { type Access, allows } from "../api/session.js";
import {
  ErrorNote,
  Facts,
  LiveNote,
  PairsTable,
  Section,
  StatusBadge,
  Time,
} from "../components/bits.js";
import { Link } from "../components/link.js";
import { bytes, dateOf, duration, exactTime, isTerminal, outcomeName } from "../format.js";
import { usePoll } from "../live/poll.js";
import { useWatchedJob } from "../live/watch-job.js";
import { navigate } from "../router.js";
import { timelineOf } from "./timeline.js";

/** A running call's phases, as WatchJob's progress events name them. */
const PHASES: Record<string, string> = {
  connected: "connected to the destination",
  headers: "response headers received",
  body: "reading the response body",
};

/** Header names the server always keeps encrypted (and masks on read), beyond secret_headers. */
export const ALWAYS_SECRET = ["authorization", "proxy-authorization", "cookie", "x-api-key"];

/**
 * One job, live: WatchJob streams its changes (while the tab is visible); each change reloads its
 * attempts and result. Shows the request with secrets masked, a timeline, every attempt, the
 * result (pretty JSON, text, or binary size and download) and the actions the caller may take.
 */
export function JobPage(props: { api: Api; jobId: string; access: Access }) {
  const { api, jobId, access } = props;
  const [refreshKey, setRefreshKey] = useState(0);
  const watched = useWatchedJob(api, jobId, refreshKey);
  const job = watched.job;
  const changeKey = job
    ? `${jobId}|${job.status}|${job.attempt}|${job.updatedAt?.seconds}|${job.updatedAt?.nanos}`
    : jobId;
  const details = usePoll(
    async (signal) => {
      const [attempts, result] = await Promise.all([
        api.listJobAttempts({ jobId }, { signal }),
        api.getJobResult({ jobId }, { signal }),
      ]);
      return { attempts: attempts.attempts, result };
    },
    changeKey,
    // Reloaded on each change the stream reports; the timer only catches what it could miss.
    { intervalMs: 30_000, keepOnNewKey: true },
  );

  const notFound = ConnectError.from(watched.error ?? "").code === Code.NotFound && watched.error;
  if (notFound) {
    return (
      <>
        <h1>Job not found</h1>
        <p>
          No job <code>{jobId}</code> is stored (it may have been deleted after its TTL, or it is
          not yours to see).
        </p>
        <Link href="/jobs">All jobs</Link>
      </>
    );
  }

  return (
    <>
      <div class="page-head">
        <h1 class="job-title">
          <span class="visually-hidden">Job </span>
          <code>{jobId}</code> {job && <StatusBadge status={job.status} />}
        </h1>
        <LiveNote
          live={watched.live}
          updatedAt={null}
          stream
          done={job && isTerminal(job.status) ? "final" : undefined}
        />
      </div>
      <ErrorNote error={watched.error} what="Live updates interrupted" />
      {!job && !watched.error && <p aria-busy="true">Loading…</p>}
      {job && (
        <>
          <Actions api={api} job={job} access={access} onDone={() => setRefreshKey((k) => k + 1)} />
          {watched.progress && (
            <p class="call-progress" data-progress={watched.progress.phase} aria-live="polite">
              Call in progress: {PHASES[watched.progress.phase] ?? watched.progress.phase}
              {watched.progress.responseStatus !== undefined &&
                `, HTTP ${watched.progress.responseStatus}`}
              {watched.progress.bytes !== undefined &&
                `, ${bytes(Number(watched.progress.bytes))} of the body read`}
            </p>
          )}
          <Summary job={job} />
          <Request job={job} />
          <Section title="Timeline" id="timeline">
            <Timeline job={job} attempts={details.data?.attempts ?? []} />
          </Section>
          <Section title="Attempts" id="attempts">
            <ErrorNote error={details.error} what="Attempts could not be read" />
            {details.data && <Attempts attempts={details.data.attempts} />}
          </Section>
          <Section title="Result" id="result">
            {details.data && <Result result={details.data.result} />}
          </Section>
        </>
      )}
    </>
  );
}

function Actions(props: { api: Api; job: Job; access: Access; onDone: () => void }) {
  const { api, job, access } = props;
  const [pending, setPending] = useState<JobAction | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  const actions = JOB_ACTIONS.filter((a) => allows(access, a.minRole) && a.appliesTo(job));

  useEffect(() => {
    const d = dialog.current;
    if (!d) return;
    if (pending && !d.open) d.showModal();
    if (!pending && d.open) d.close();
  }, [pending]);

  const run = async (action: JobAction) => {
    setBusy(true);
    setError(null);
    try {
      await action.run(api, job);
      if (action.id === "delete") navigate("/jobs", { replace: true });
      else props.onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      setPending(null);
    }
  };

  if (actions.length === 0 && !error) return null;
  return (
    <fieldset class="actions">
      <legend class="visually-hidden">Actions</legend>
      {actions.map((a) => (
        <button
          type="button"
          key={a.id}
          data-action={a.id}
          class={a.destructive ? "destructive" : ""}
          disabled={busy}
          aria-busy={busy}
          onClick={() => (a.confirm ? setPending(a) : void run(a))}
        >
          {a.label}
        </button>
      ))}
      {error !== null && (
        <p class="error-note" role="alert">
          {errorText(error)}
        </p>
      )}
      <dialog ref={dialog} onClose={() => setPending(null)} aria-labelledby="confirm-h">
        {pending && (
          <article>
            <h2 id="confirm-h">{pending.label}</h2>
            <p>{pending.confirm?.(job)}</p>
            <footer>
              <button type="button" class="secondary" onClick={() => setPending(null)}>
                Keep it
              </button>
              <button
                type="button"
                class="destructive"
                data-confirm={pending.id}
                onClick={() => void run(pending)}
              >
                {pending.label}
              </button>
            </footer>
          </article>
        )}
      </dialog>
    </fieldset>
  );
}

function Summary(props: { job: Job }) {
  const { job } = props;
  return (
    <Section title="Summary" id="summary">
      <Facts
        rows={[
          ["Status", <StatusBadge status={job.status} key="s" />],
          ["Attempts", `${job.attempt} of ${job.maxAttempts}`],
          [
            "Queue",
            <Link href={`/jobs?queue=${encodeURIComponent(job.queue)}`} key="q">
              {job.queue}
            </Link>,
          ],
          ["Created", <Time ts={job.createdAt} exact key="c" />],
          ["Started", <Time ts={job.startedAt} exact key="st" />],
          ["Finished", <Time ts={job.finishedAt} exact key="f" />],
          ...(job.nextRunAt && !job.finishedAt
            ? ([["Next run", <Time ts={job.nextRunAt} key="n" />]] as [string, ComponentChildren][])
            : []),
          ...(job.expiresAt
            ? ([["Deleted", <Time ts={job.expiresAt} key="e" />]] as [string, ComponentChildren][])
            : []),
          ...(job.scheduleId
            ? ([
                [
                  "Schedule",
                  <span key="sch" data-schedule={job.scheduleId}>
                    <Link href={`/schedules/${encodeURIComponent(job.scheduleId)}`}>
                      <code>{job.scheduleId}</code>
                    </Link>
                    {job.scheduleTick ? (
                      <>
                        {" · tick "}
                        <Time ts={job.scheduleTick} exact />
                      </>
                    ) : (
                      <span class="muted"> · run now (no tick)</span>
                    )}
                  </span>,
                ],
              ] as [string, ComponentChildren][])
            : []),
          ...(job.callbackUrl
            ? ([
                [
                  "Callback",
                  <span key="cb" data-callback-url={job.callbackUrl}>
                    <code>{job.callbackUrl}</code>
                    {job.callbackJobId && (
                      <>
                        {" · delivery "}
                        <Link href={`/jobs/${encodeURIComponent(job.callbackJobId)}`}>
                          <code>{job.callbackJobId}</code>
                        </Link>
                      </>
                    )}
                  </span>,
                ],
              ] as [string, ComponentChildren][])
            : []),
          ...(job.callbackOf
            ? ([
                [
                  "Delivers the outcome of",
                  <Link
                    href={`/jobs/${encodeURIComponent(job.callbackOf)}`}
                    key="cbo"
                    data-callback-of={job.callbackOf}
                  >
                    <code>{job.callbackOf}</code>
                  </Link>,
                ],
              ] as [string, ComponentChildren][])
            : []),
          ...(job.sign
            ? ([["Signed", "yes (Standard Webhooks)"]] as [string, ComponentChildren][])
            : []),
          ["Priority", String(job.priority)],
          ["Timeout", `${job.timeoutSec} s`],
          [
            "Backoff",
            `${["unspecified", "fixed", "linear", "exponential"][job.backoffStrategy]} from ${job.backoffSeconds} s`,
          ],
          [
            "Tags",
            job.tags.length ? (
              job.tags.map((t) => (
                <span class="tag" key={t}>
                  {t}
                </span>
              ))
            ) : (
              <span class="muted">none</span>
            ),
          ],
          ["Owner", job.owner ?? <span class="muted">—</span>],
          [
            "Idempotency key",
            job.idempotencyKey ? <code>{job.idempotencyKey}</code> : <span class="muted">—</span>,
          ],
          [
            "Rate-limit key",
            job.rateLimitKey ? <code>{job.rateLimitKey}</code> : <span class="muted">—</span>,
          ],
          [
            "Last error",
            job.lastError ? (
              <>
                {job.lastErrorCode && <code>{job.lastErrorCode}</code>} {job.lastError}
              </>
            ) : (
              <span class="muted">—</span>
            ),
          ],
        ]}
      />
    </Section>
  );
}

function Request(props: { job: Job }) {
  const { job } = props;
  const secret = [...ALWAYS_SECRET, ...job.secretHeaders];
  const payload = job.payload;
  return (
    <Section title="Request" id="request">
      <p class="request-line">
        <span class="method">{job.method}</span> <code class="url">{job.url}</code>
      </p>
      <h3>Query parameters</h3>
      <PairsTable pairs={job.params} caption="Query parameters" />
      <h3>Headers</h3>
      <PairsTable pairs={job.headers} caption="Headers" secret={secret} />
      <p class="muted">
        {job.followRedirects
          ? `Follows up to ${job.maxRedirects} redirects.`
          : "Does not follow redirects."}
      </p>
      <h3>Body</h3>
      {payload.case === undefined && <p class="muted">No body.</p>}
      {payload.case === "body" && (
        <BodyView value={toJson(ValueSchema, payload.value)} name={`${job.jobId}-request`} />
      )}
      {payload.case === "bodyBytes" && (
        <BinaryView
          data={payload.value}
          name={`${job.jobId}-request.bin`}
          type="application/octet-stream"
        />
      )}
    </Section>
  );
}

function Timeline(props: { job: Job; attempts: Attempt[] }) {
  const entries = timelineOf(props.job, props.attempts);
  return (
    <ol class="timeline">
      {entries.map((e, i) => (
        <li key={i} class={`tone-${e.tone}${e.future ? " future" : ""}`} data-kind={e.kind}>
          <time dateTime={e.at.toISOString()}>{exactTime(e.at)}</time>
          <span>
            {e.text}
            {e.future ? " (due)" : ""}
          </span>
        </li>
      ))}
    </ol>
  );
}

function Attempts(props: { attempts: Attempt[] }) {
  if (props.attempts.length === 0) return <p class="muted">No attempt has started yet.</p>;
  return (
    <div class="overflow-auto">
      <table class="striped attempts">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Outcome</th>
            <th scope="col">HTTP</th>
            <th scope="col">Node</th>
            <th scope="col">Started</th>
            <th scope="col">Took</th>
            <th scope="col">Error</th>
          </tr>
        </thead>
        <tbody>
          {props.attempts.map((a) => {
            const started = dateOf(a.startedAt);
            return (
              <tr key={a.attempt} data-attempt={a.attempt}>
                <td>{a.attempt}</td>
                <td>
                  <span class={`badge outcome-${outcomeName(a.outcome)}`}>
                    {outcomeName(a.outcome)}
                  </span>
                  {a.retryable && <small class="muted"> retryable</small>}
                </td>
                <td>{a.responseStatus ?? <span class="muted">—</span>}</td>
                <td>{a.node ? <code>{a.node}</code> : <span class="muted">—</span>}</td>
                <td>
                  {started ? (
                    <time dateTime={started.toISOString()}>{exactTime(started)}</time>
                  ) : (
                    "—"
                  )}
                </td>
                <td>
                  {a.durationMs !== undefined ? (
                    duration(a.durationMs)
                  ) : (
                    <span class="muted">running</span>
                  )}
                </td>
                <td class="error-cell">
                  {a.errorCode && <code>{a.errorCode}</code>} {a.error}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function Result(props: { result: GetJobResultResponse }) {
  const r = props.result;
  if (r.responseStatus === undefined && r.error === undefined) {
    return <p class="muted">No attempt has ended yet.</p>;
  }
  const type = r.responseHeaders["content-type"] ?? "application/octet-stream";
  const body = r.responseBody ? toJson(ValueSchema, r.responseBody) : null;
  return (
    <>
      <Facts
        rows={[
          ["From attempt", String(r.attempt)],
          [
            "HTTP status",
            r.responseStatus !== undefined ? (
              String(r.responseStatus)
            ) : (
              <span class="muted">no answer</span>
            ),
          ],
          ["Took", r.durationMs !== undefined ? duration(r.durationMs) : "—"],
          ["Finished", <Time ts={r.finishedAt} exact key="f" />],
          ...(r.error ? ([["Error", r.error]] as [string, ComponentChildren][]) : []),
        ]}
      />
      {r.truncated && (
        <p class="warn-note">
          The body was cut at the server's result size limit (JOBQUEUE_RESULT_MAX_BYTES).
        </p>
      )}
      <details>
        <summary>Response headers ({Object.keys(r.responseHeaders).length})</summary>
        <PairsTable pairs={r.responseHeaders} caption="Response headers" />
      </details>
      <h3>Body</h3>
      {body === null && <p class="muted">No body.</p>}
      {body !== null &&
        r.responseBodyEncoding === BodyEncoding.BASE64 &&
        typeof body === "string" && (
          <BinaryView data={base64Bytes(body)} name={`${r.jobId}-response`} type={type} />
        )}
      {body !== null && r.responseBodyEncoding !== BodyEncoding.BASE64 && (
        <BodyView
          value={body}
          name={`${r.jobId}-response`}
          type={type}
          text={r.responseBodyEncoding === BodyEncoding.TEXT}
        />
      )}
    </>
  );
}

/** A JSON value shown pretty, or a text as it is, with a download of either. */
export function BodyView(props: { value: unknown; name: string; type?: string; text?: boolean }) {
  const isText = props.text || typeof props.value === "string";
  const shown = isText ? String(props.value) : JSON.stringify(props.value, null, 2);
  return (
    <div class="body-view" data-body-kind={isText ? "text" : "json"}>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable box must take focus to be scrolled from the keyboard */}
      <pre tabIndex={0}>
        <code>{shown}</code>
      </pre>
      <Download
        data={new TextEncoder().encode(shown)}
        name={`${props.name}.${isText ? "txt" : "json"}`}
        type={isText ? "text/plain" : "application/json"}
      />
    </div>
  );
}

function BinaryView(props: { data: Uint8Array; name: string; type: string }) {
  return (
    <div class="body-view" data-body-kind="binary">
      <p>
        Binary, {bytes(props.data.length)} <small class="muted">({props.type})</small>
      </p>
      <Download data={props.data} name={props.name} type={props.type} />
    </div>
  );
}

function Download(props: { data: Uint8Array; name: string; type: string }) {
  return (
    <button
      type="button"
      class="secondary outline small"
      onClick={() => {
        const url = URL.createObjectURL(new Blob([props.data as BlobPart], { type: props.type }));
        const a = document.createElement("a");
        a.href = url;
        a.download = props.name;
        a.click();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
      }}
    >
      Download ({bytes(props.data.length)})
    </button>
  );
}

function base64Bytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
