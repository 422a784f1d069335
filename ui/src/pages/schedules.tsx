import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import {
  CatchUpPolicy,
  OverlapPolicy,
  type Schedule,
} from "../../../gen/jobqueue/v1/schedule_service_pb.js";
import { type Api, errorText } from "../api/client.js";
import { type Access, allows } from "../api/session.js";
import { ErrorNote, Facts, LiveNote, PairsTable, Section, Time } from "../components/bits.js";
import { JobsTable } from "../components/jobs-table.js";
import { Link } from "../components/link.js";
import { Modal } from "../components/modal.js";
import { bytes } from "../format.js";
import { usePoll } from "../live/poll.js";
import { navigate } from "../router.js";
import { ALWAYS_SECRET, BodyView } from "./job.js";

const OVERLAP: Record<OverlapPolicy, string> = {
  [OverlapPolicy.UNSPECIFIED]: "skip",
  [OverlapPolicy.SKIP]: "skip",
  [OverlapPolicy.BUFFER_ONE]: "buffer one",
  [OverlapPolicy.ALLOW]: "allow",
  [OverlapPolicy.CANCEL_PREVIOUS]: "cancel previous",
};

const CATCH_UP: Record<CatchUpPolicy, string> = {
  [CatchUpPolicy.UNSPECIFIED]: "skip",
  [CatchUpPolicy.SKIP]: "skip",
  [CatchUpPolicy.RUN_MISSED]: "run missed",
};

const scheduleHref = (id: string) => `/schedules/${encodeURIComponent(id)}`;

function PausedBadge(props: { paused: boolean }) {
  return props.paused ? (
    <span class="badge status-canceled" data-paused="true">
      paused
    </span>
  ) : (
    <span class="badge status-running" data-paused="false">
      active
    </span>
  );
}

/** Every schedule (the first 200, newest first), refreshed while visible. */
export function SchedulesPage(props: { api: Api; access: Access }) {
  const list = usePoll(
    (signal) => props.api.schedules.listSchedules({ pageSize: 500 }, { signal }),
    "schedules",
  );
  const schedules = list.data?.schedules ?? [];
  return (
    <>
      <div class="page-head">
        <h1>Schedules</h1>
        <LiveNote live={list.live} updatedAt={list.updatedAt} />
      </div>
      <ErrorNote error={list.error} what="Schedules could not be read" />
      {allows(props.access, "submitter") && <CreateForm api={props.api} />}
      {list.data && schedules.length === 0 && (
        <p class="muted">
          No schedule yet. Create one with <code>POST /schedules</code> or{" "}
          <code>jobqueue schedules create</code>.
        </p>
      )}
      {schedules.length > 0 && (
        <div class="overflow-auto">
          <table class="striped schedules">
            <caption class="visually-hidden">Schedules</caption>
            <thead>
              <tr>
                <th scope="col">Schedule</th>
                <th scope="col">Cron</th>
                <th scope="col">Time zone</th>
                <th scope="col">Next run</th>
                <th scope="col">Last run</th>
                <th scope="col">State</th>
                <th scope="col">Overlap</th>
              </tr>
            </thead>
            <tbody>
              {schedules.map((s) => (
                <tr key={s.scheduleId} data-schedule-id={s.scheduleId}>
                  <td>
                    <Link href={scheduleHref(s.scheduleId)}>
                      <code>{s.scheduleId}</code>
                    </Link>
                    {s.description && <small class="muted"> {s.description}</small>}
                  </td>
                  <td>
                    <code>{s.cron}</code>
                  </td>
                  <td>{s.timeZone || "UTC"}</td>
                  <td>{s.paused ? <span class="muted">—</span> : <Time ts={s.nextRunAt} />}</td>
                  <td>
                    <LastRun schedule={s} />
                  </td>
                  <td>
                    <PausedBadge paused={s.paused} />
                  </td>
                  <td>{OVERLAP[s.overlapPolicy]}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {list.data?.nextPageToken && <p class="muted">Only the newest 200 schedules are shown.</p>}
    </>
  );
}

function LastRun(props: { schedule: Schedule }) {
  const s = props.schedule;
  if (!s.lastRunAt) return <span class="muted">never</span>;
  return (
    <>
      <Time ts={s.lastRunAt} />
      {s.lastJobId && (
        <>
          {" · "}
          <Link href={`/jobs/${encodeURIComponent(s.lastJobId)}`} data-last-job={s.lastJobId}>
            <code>{s.lastJobId}</code>
          </Link>
        </>
      )}
    </>
  );
}

type ScheduleAction = "pause" | "resume" | "trigger" | "delete";

/** One schedule: when it runs, its job template (secrets masked), its jobs, and its actions. */
export function SchedulePage(props: { api: Api; scheduleId: string; access: Access }) {
  const { api, scheduleId, access } = props;
  const [version, setVersion] = useState(0);
  const loaded = usePoll(
    async (signal) => {
      const [got, jobs] = await Promise.all([
        api.schedules.getSchedule({ scheduleId }, { signal }),
        api.listJobs({ scheduleId, pageSize: 50 }, { signal }),
      ]);
      return { schedule: got.schedule, jobs: jobs.jobs };
    },
    `${scheduleId}|${version}`,
    { keepOnNewKey: true },
  );
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [confirming, setConfirming] = useState(false);

  const notFound = ConnectError.from(loaded.error ?? "").code === Code.NotFound && loaded.error;
  if (notFound) {
    return (
      <>
        <h1>Schedule not found</h1>
        <p>
          No schedule <code>{scheduleId}</code> is stored (it may have been deleted, or it is not
          yours to see).
        </p>
        <Link href="/schedules">All schedules</Link>
      </>
    );
  }
  const s = loaded.data?.schedule;

  const run = async (action: ScheduleAction) => {
    setBusy(true);
    setError(null);
    try {
      if (action === "pause") await api.schedules.pauseSchedule({ scheduleId });
      if (action === "resume") await api.schedules.resumeSchedule({ scheduleId });
      if (action === "trigger") await api.schedules.triggerSchedule({ scheduleId });
      if (action === "delete") {
        await api.schedules.deleteSchedule({ scheduleId });
        navigate("/schedules", { replace: true });
        return;
      }
      setVersion((v) => v + 1);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      setConfirming(false);
    }
  };

  const mayAct = allows(access, "submitter");
  return (
    <>
      <div class="page-head">
        <h1 class="schedule-title">
          <span class="visually-hidden">Schedule </span>
          <code>{scheduleId}</code> {s && <PausedBadge paused={s.paused} />}
        </h1>
        <LiveNote live={loaded.live} updatedAt={loaded.updatedAt} />
      </div>
      <ErrorNote error={loaded.error} what="The schedule could not be read" />
      {!s && !loaded.error && <p aria-busy="true">Loading…</p>}
      {s && (
        <>
          {mayAct && (
            <fieldset class="actions">
              <legend class="visually-hidden">Actions</legend>
              {s.paused ? (
                <button
                  type="button"
                  data-schedule-action="resume"
                  disabled={busy}
                  onClick={() => void run("resume")}
                >
                  Resume
                </button>
              ) : (
                <button
                  type="button"
                  data-schedule-action="pause"
                  disabled={busy}
                  onClick={() => void run("pause")}
                >
                  Pause
                </button>
              )}
              <button
                type="button"
                data-schedule-action="trigger"
                disabled={busy}
                onClick={() => void run("trigger")}
              >
                Run now
              </button>
              <button
                type="button"
                class="destructive"
                data-schedule-action="delete"
                disabled={busy}
                onClick={() => setConfirming(true)}
              >
                Delete schedule
              </button>
              {error !== null && (
                <p class="error-note" role="alert">
                  {errorText(error)}
                </p>
              )}
              <Modal open={confirming} onClose={() => setConfirming(false)} labelledBy="confirm-h">
                <article>
                  <h2 id="confirm-h">Delete schedule</h2>
                  <p>
                    Delete {scheduleId}? No more jobs will be enqueued for it; the jobs it already
                    enqueued stay. This cannot be undone.
                  </p>
                  <footer>
                    <button type="button" class="secondary" onClick={() => setConfirming(false)}>
                      Keep it
                    </button>
                    <button
                      type="button"
                      class="destructive"
                      data-confirm="delete"
                      onClick={() => void run("delete")}
                    >
                      Delete schedule
                    </button>
                  </footer>
                </article>
              </Modal>
            </fieldset>
          )}
          <Section title="Summary" id="summary">
            <Facts
              rows={[
                ["Cron", <code key="c">{s.cron}</code>],
                ["Time zone", s.timeZone || "UTC"],
                ["State", <PausedBadge paused={s.paused} key="p" />],
                [
                  "Next run",
                  s.paused ? (
                    <span class="muted">paused</span>
                  ) : (
                    <Time ts={s.nextRunAt} exact key="n" />
                  ),
                ],
                ["Last run", <LastRun schedule={s} key="l" />],
                ["Overlap", OVERLAP[s.overlapPolicy]],
                [
                  "Catch-up",
                  s.catchUp === CatchUpPolicy.RUN_MISSED
                    ? `${CATCH_UP[s.catchUp]} (within ${s.catchUpWindowSeconds} s)`
                    : CATCH_UP[s.catchUp],
                ],
                ["Jitter", s.jitterSeconds ? `up to ${s.jitterSeconds} s` : "none"],
                ["Starts", <Time ts={s.startAt} exact key="sa" />],
                ["Ends", <Time ts={s.endAt} exact key="ea" />],
                ["Description", s.description || <span class="muted">—</span>],
                ["Owner", s.owner ?? <span class="muted">—</span>],
                ["Created", <Time ts={s.createdAt} exact key="cr" />],
              ]}
            />
          </Section>
          <Template schedule={s} />
          <Section title="Jobs" id="schedule-jobs">
            {loaded.data && loaded.data.jobs.length === 0 && (
              <p class="muted">No job enqueued by this schedule is stored.</p>
            )}
            {loaded.data && loaded.data.jobs.length > 0 && (
              <JobsTable jobs={loaded.data.jobs} compact caption="Jobs of this schedule" />
            )}
          </Section>
        </>
      )}
    </>
  );
}

/** The job template, as the job page shows a request: secrets masked. */
function Template(props: { schedule: Schedule }) {
  const t = props.schedule.template;
  if (!t) return null;
  const secret = [...ALWAYS_SECRET, ...t.secretHeaders];
  return (
    <Section title="Job template" id="template">
      <p class="request-line">
        <span class="method">{t.method || "GET"}</span> <code class="url">{t.url}</code>
      </p>
      <Facts
        rows={[
          ["Queue", t.queue || "default"],
          ["Priority", String(t.priority)],
          ["Max attempts", t.maxAttempts !== undefined ? String(t.maxAttempts) : "default"],
          ["Timeout", t.timeoutSec !== undefined ? `${t.timeoutSec} s` : "default"],
          [
            "Callback URL",
            t.callbackUrl ? <code key="cb">{t.callbackUrl}</code> : <span class="muted">—</span>,
          ],
          ["Signed", t.sign ? "yes (Standard Webhooks)" : "no"],
          ...(t.signingSecret
            ? ([
                [
                  "Signing secret",
                  <span class="secret" title="kept encrypted; never shown" key="ss">
                    •••••• <small>secret</small>
                  </span>,
                ],
              ] as [string, ComponentChildren][])
            : []),
        ]}
      />
      <h3>Query parameters</h3>
      <PairsTable pairs={t.params} caption="Query parameters" />
      <h3>Headers</h3>
      <PairsTable pairs={t.headers} caption="Headers" secret={secret} />
      <h3>Body</h3>
      {t.payload.case === undefined && <p class="muted">No body.</p>}
      {t.payload.case === "body" && (
        <BodyView
          value={toJson(ValueSchema, t.payload.value)}
          name={`${props.schedule.scheduleId}-template`}
        />
      )}
      {t.payload.case === "bodyBytes" && <p>Binary, {bytes(t.payload.value.length)}</p>}
    </Section>
  );
}

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/** A new schedule from the essentials; every other setting keeps its default. */
function CreateForm(props: { api: Api }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  if (!open) {
    return (
      <p>
        <button type="button" data-schedule-create="open" onClick={() => setOpen(true)}>
          New schedule
        </button>
      </p>
    );
  }
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const text = (name: string) => String(form.get(name) ?? "").trim();
    let body: JsonValue | undefined;
    if (text("body")) {
      try {
        body = JSON.parse(text("body")) as JsonValue;
      } catch {
        setError("body: not valid JSON");
        return;
      }
    }
    setBusy(true);
    setError(null);
    try {
      const { schedule } = await props.api.schedules.createSchedule({
        schedule: {
          cron: text("cron"),
          timeZone: text("timeZone") || "UTC",
          description: text("description") || undefined,
          template: {
            method: text("method"),
            url: text("url"),
            payload:
              body === undefined
                ? { case: undefined }
                : { case: "body", value: fromJson(ValueSchema, body) },
          },
        },
      });
      if (schedule) navigate(scheduleHref(schedule.scheduleId));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="schedule-create" onSubmit={(e) => void submit(e)}>
      <fieldset class="grid">
        <label>
          Cron
          <input name="cron" required placeholder="0 9 * * 1-5" />
        </label>
        <label>
          Time zone
          <input name="timeZone" placeholder="UTC" />
        </label>
        <label>
          Description
          <input name="description" />
        </label>
      </fieldset>
      <fieldset class="grid">
        <label>
          Method
          <select name="method">
            {METHODS.map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </label>
        <label>
          URL
          <input name="url" type="url" required placeholder="https://api.example.com/ping" />
        </label>
      </fieldset>
      <label>
        Body (JSON, optional)
        <textarea name="body" rows={3} />
      </label>
      {error && (
        <p class="error-note" role="alert">
          {error}
        </p>
      )}
      <button type="submit" data-schedule-create="submit" disabled={busy} aria-busy={busy}>
        Create schedule
      </button>{" "}
      <button type="button" class="secondary" onClick={() => setOpen(false)}>
        Cancel
      </button>
    </form>
  );
}
