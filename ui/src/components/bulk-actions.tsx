import type { MessageInitShape } from "@bufbuild/protobuf";
import { useEffect, useState } from "preact/hooks";
import { type Operation, OperationKind, OperationState } from "../../../gen/jobqueue/v1/job_pb.js";
import type { JobFilterSchema } from "../../../gen/jobqueue/v1/job_queue_service_pb.js";
import { BULK_ACTIONS, type BulkKind } from "../actions.js";
import { type Api, errorText } from "../api/client.js";
import { usePoll } from "../live/poll.js";
import { ErrorNote, Time } from "./bits.js";
import { Modal } from "./modal.js";

type Filter = MessageInitShape<typeof JobFilterSchema>;

/** Where a bulk action is: counting (dry run), asking, running the operation, or done. */
type Step =
  | { phase: "counting" }
  | { phase: "confirm"; count: bigint; capped: boolean }
  | { phase: "running"; operation: Operation }
  | { phase: "error"; error: unknown };

interface Pending {
  kind: BulkKind;
  /** "3 selected jobs", "every job matching the filter". */
  what: string;
  filter: Filter;
}

const OPERATION_POLL_MS = 500;

/**
 * Bulk cancel, retry and delete, on the selected rows (their job ids) or on every job matching
 * the list's filter. Each asks the server first how many jobs the action applies to (a dry run),
 * runs only after confirmation, and then follows the operation (GetOperation) until it ends.
 */
export function BulkActions(props: {
  api: Api;
  selected: string[];
  filter: Filter;
  filterText: string;
  onDone: () => void;
}) {
  const { api } = props;
  const [pending, setPending] = useState<Pending | null>(null);
  const [step, setStep] = useState<Step>({ phase: "counting" });

  const call = (kind: BulkKind, filter: Filter, dryRun: boolean) =>
    kind === "cancel"
      ? api.cancelJobs({ filter, dryRun })
      : kind === "retry"
        ? api.retryJobs({ filter, dryRun })
        : api.deleteJobs({ filter, dryRun });

  const start = async (p: Pending) => {
    setPending(p);
    setStep({ phase: "counting" });
    try {
      const res = await call(p.kind, p.filter, true);
      setStep({ phase: "confirm", count: res.count, capped: res.countCapped });
    } catch (error) {
      setStep({ phase: "error", error });
    }
  };
  const run = async (p: Pending) => {
    try {
      const res = await call(p.kind, p.filter, false);
      if (res.operation) setStep({ phase: "running", operation: res.operation });
    } catch (error) {
      setStep({ phase: "error", error });
    }
  };

  // Follows the operation until it ends.
  const opId = step.phase === "running" ? step.operation.operationId : null;
  const opRunning = step.phase === "running" && step.operation.state === OperationState.RUNNING;
  useEffect(() => {
    if (!opId || !opRunning) return;
    const timer = setTimeout(async () => {
      try {
        const { operation } = await api.getOperation({ operationId: opId });
        if (operation) setStep({ phase: "running", operation });
        if (operation && operation.state !== OperationState.RUNNING) props.onDone();
      } catch (error) {
        setStep({ phase: "error", error });
      }
    }, OPERATION_POLL_MS);
    return () => clearTimeout(timer);
  }, [opId, opRunning, step]);

  const close = () => {
    setPending(null);
    props.onDone();
  };
  const n = props.selected.length;
  return (
    <fieldset class="bulk-bar">
      <legend class="visually-hidden">Bulk actions</legend>
      <span class="bulk-scope">
        <strong>{n}</strong> selected:
      </span>
      {BULK_ACTIONS.map((a) => (
        <button
          type="button"
          key={`sel-${a.kind}`}
          class="secondary outline small"
          data-bulk={`${a.kind}-selected`}
          disabled={n === 0}
          onClick={() =>
            void start({
              kind: a.kind,
              what: `the ${n} selected job${n === 1 ? "" : "s"}`,
              filter: { jobIds: props.selected },
            })
          }
        >
          {a.label}
        </button>
      ))}
      <span class="bulk-scope">All matching the filter:</span>
      {BULK_ACTIONS.map((a) => (
        <button
          type="button"
          key={`all-${a.kind}`}
          class="secondary outline small"
          data-bulk={`${a.kind}-matching`}
          onClick={() =>
            void start({
              kind: a.kind,
              what: `every job matching ${props.filterText}`,
              filter: props.filter,
            })
          }
        >
          {a.label} all…
        </button>
      ))}
      <Modal open={pending !== null} onClose={close} labelledBy="bulk-h">
        {pending && (
          <article data-bulk-step={step.phase}>
            <h2 id="bulk-h">
              {BULK_ACTIONS.find((a) => a.kind === pending.kind)?.label} {pending.what}
            </h2>
            {step.phase === "counting" && <p aria-busy="true">Counting the jobs it applies to…</p>}
            {step.phase === "confirm" && (
              <p data-bulk-count={String(step.count)}>
                This applies to{" "}
                <strong>
                  {step.capped ? "at least " : ""}
                  {step.count.toLocaleString("en")} job{step.count === 1n ? "" : "s"}
                </strong>{" "}
                ({BULK_ACTIONS.find((a) => a.kind === pending.kind)?.applies} ones, now).
                {pending.kind === "delete" ? " Deleted jobs cannot be brought back." : ""}
              </p>
            )}
            {step.phase === "running" && <Progress operation={step.operation} />}
            {step.phase === "error" && (
              <p class="error-note" role="alert">
                {errorText(step.error)}
              </p>
            )}
            <footer>
              {step.phase === "confirm" ? (
                <>
                  <button type="button" class="secondary" onClick={close}>
                    Keep them
                  </button>
                  <button
                    type="button"
                    class={pending.kind === "retry" ? "" : "destructive"}
                    data-confirm={`bulk-${pending.kind}`}
                    disabled={step.count === 0n}
                    onClick={() => void run(pending)}
                  >
                    {BULK_ACTIONS.find((a) => a.kind === pending.kind)?.label}{" "}
                    {step.count.toLocaleString("en")} job{step.count === 1n ? "" : "s"}
                  </button>
                </>
              ) : (
                <button type="button" class="secondary" onClick={close}>
                  Close
                </button>
              )}
            </footer>
          </article>
        )}
      </Modal>
    </fieldset>
  );
}

const STATE_TEXT: Record<OperationState, string> = {
  [OperationState.UNSPECIFIED]: "unknown",
  [OperationState.RUNNING]: "running",
  [OperationState.SUCCEEDED]: "done",
  [OperationState.CANCELED]: "stopped",
  [OperationState.FAILED]: "failed",
};

function Progress(props: { operation: Operation }) {
  const op = props.operation;
  const max = Number(op.estimate);
  return (
    <div class="operation" data-operation-state={STATE_TEXT[op.state]}>
      <progress value={Number(op.examined)} max={Math.max(max, 1)} />
      <p aria-live="polite">
        <strong>{STATE_TEXT[op.state]}</strong>: {op.examined.toLocaleString("en")} of{" "}
        {op.estimateCapped ? "at least " : ""}
        {op.estimate.toLocaleString("en")} examined,{" "}
        <span data-affected>{String(op.affected)}</span> changed.{" "}
        <small class="muted">({op.operationId})</small>
      </p>
      {op.error && <p class="error-note">{op.error}</p>}
    </div>
  );
}

const KIND_TEXT: Record<OperationKind, string> = {
  [OperationKind.UNSPECIFIED]: "unknown",
  [OperationKind.CANCEL]: "cancel",
  [OperationKind.RETRY]: "retry",
  [OperationKind.DELETE]: "delete",
};

/**
 * The latest bulk actions (ListOperations: the caller's own, or everyone's for an admin) with
 * their progress, read while the list is open: an operation outlives the dialog that started it.
 */
export function RecentOperations(props: { api: Api }) {
  const [open, setOpen] = useState(false);
  return (
    <details
      class="operations"
      onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}
    >
      <summary>Recent bulk actions</summary>
      {open && <OperationsTable api={props.api} />}
    </details>
  );
}

function OperationsTable(props: { api: Api }) {
  const ops = usePoll(
    (signal) => props.api.listOperations({ pageSize: 10 }, { signal }),
    "operations",
    { intervalMs: 3_000 },
  );
  if (ops.error) return <ErrorNote error={ops.error} what="Bulk actions could not be read" />;
  if (!ops.data) return <p aria-busy="true">Loading…</p>;
  if (ops.data.operations.length === 0) return <p class="muted">None yet.</p>;
  return (
    <div class="overflow-auto">
      <table class="striped operations">
        <caption class="visually-hidden">Recent bulk actions</caption>
        <thead>
          <tr>
            <th scope="col">Action</th>
            <th scope="col">State</th>
            <th scope="col" class="num">
              Changed
            </th>
            <th scope="col" class="num wide-only">
              Examined
            </th>
            <th scope="col" class="wide-only">
              By
            </th>
            <th scope="col">Started</th>
          </tr>
        </thead>
        <tbody>
          {ops.data.operations.map((op) => (
            <tr key={op.operationId} data-operation={op.operationId}>
              <td>
                {KIND_TEXT[op.kind]} <small class="muted">{op.operationId}</small>
              </td>
              <td data-operation-state={STATE_TEXT[op.state]}>
                {STATE_TEXT[op.state]}
                {op.error && <small class="error-note"> {op.error}</small>}
              </td>
              <td class="num">{op.affected.toLocaleString("en")}</td>
              <td class="num wide-only">
                {op.examined.toLocaleString("en")} / {op.estimateCapped ? "≥ " : ""}
                {op.estimate.toLocaleString("en")}
              </td>
              <td class="wide-only">{op.principal ?? <span class="muted">—</span>}</td>
              <td>
                <Time ts={op.createdAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
