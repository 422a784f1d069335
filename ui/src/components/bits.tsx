import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { ComponentChildren } from "preact";
import type { JobStatus } from "../../../gen/jobqueue/v1/job_pb.js";
import { errorText } from "../api/client.js";
import { dateOf, exactTime, relativeTime, statusName } from "../format.js";

export function StatusBadge(props: { status: JobStatus }) {
  const name = statusName(props.status);
  return <span class={`badge status-${name}`}>{name}</span>;
}

/** A time shown relative ("12 s ago"), exact on hover and to screen readers' `datetime`. */
export function Time(props: { ts: Timestamp | undefined; exact?: boolean }) {
  const d = dateOf(props.ts);
  if (!d) return <span class="muted">—</span>;
  const iso = d.toISOString();
  return (
    <time dateTime={iso} title={exactTime(d)}>
      {props.exact ? exactTime(d) : relativeTime(d)}
    </time>
  );
}

export function ErrorNote(props: { error: unknown; what?: string }) {
  if (!props.error) return null;
  return (
    <p class="error-note" role="alert">
      {props.what ? `${props.what}: ` : ""}
      {errorText(props.error)}
    </p>
  );
}

/** Shows the age of live data and whether it is paused (the tab is hidden). */
export function LiveNote(props: {
  live: boolean;
  updatedAt: Date | null;
  stream?: boolean;
  /** Said instead of "paused" when nothing more will change (a finished job). */
  done?: string;
  /** Whether the tab is visible: not live then means the stream is (re)connecting. */
  visible?: boolean;
}) {
  const idle = props.visible ? "connecting…" : (props.done ?? "paused");
  return (
    <small class="live-note" aria-live="off" data-live={props.live ? "on" : "off"}>
      <span class={props.live ? "dot on" : "dot"} aria-hidden="true" />
      {props.live ? (props.stream ? "live" : "refreshing every 5 s") : idle}
      {props.updatedAt ? ` · updated ${relativeTime(props.updatedAt)}` : ""}
    </small>
  );
}

/** A two-column list of names and values. */
export function Facts(props: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="facts">
      {props.rows.map(([name, value]) => (
        <div key={name}>
          <dt>{name}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

/** A table of string pairs (headers, params). */
export function PairsTable(props: {
  pairs: Record<string, string>;
  caption: string;
  secret?: string[];
}) {
  const names = Object.keys(props.pairs).sort();
  if (names.length === 0) return <p class="muted">No {props.caption.toLowerCase()}.</p>;
  const secret = new Set((props.secret ?? []).map((s) => s.toLowerCase()));
  return (
    <div class="overflow-auto">
      <table class="pairs">
        <caption class="visually-hidden">{props.caption}</caption>
        <tbody>
          {names.map((name) => {
            const value = props.pairs[name]!;
            const masked = value === "***" || secret.has(name.toLowerCase());
            return (
              <tr key={name}>
                <th scope="row">{name}</th>
                <td>
                  {masked ? (
                    <span class="secret" title="kept encrypted; never shown">
                      •••••• <small>secret</small>
                    </span>
                  ) : (
                    <code>{value}</code>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function Section(props: {
  title: string;
  id?: string;
  children: ComponentChildren;
  aside?: ComponentChildren;
}) {
  return (
    <section aria-labelledby={props.id ? `${props.id}-h` : undefined} id={props.id}>
      <div class="section-head">
        <h2 id={props.id ? `${props.id}-h` : undefined}>{props.title}</h2>
        {props.aside}
      </div>
      {props.children}
    </section>
  );
}
