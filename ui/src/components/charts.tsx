import { exactTime } from "../format.js";

/** One minute of jobs that ended, all queues together. */
export interface MinuteCounts {
  at: Date;
  succeeded: number;
  failed: number;
  canceled: number;
}

const W = 600;
const H = 140;

/**
 * Jobs ended per minute as stacked bars (succeeded, failed, canceled), in plain SVG. Screen readers
 * get a summary; the numbers of each minute are in each bar's title.
 */
export function ThroughputChart(props: { minutes: MinuteCounts[] }) {
  const { minutes } = props;
  const totals = minutes.map((m) => m.succeeded + m.failed + m.canceled);
  const max = Math.max(1, ...totals);
  const all = totals.reduce((a, b) => a + b, 0);
  const bw = W / Math.max(1, minutes.length);
  const y = (n: number) => (n / max) * (H - 4);
  return (
    <figure class="chart" data-chart="throughput">
      <svg
        viewBox={`0 0 ${W} ${H}`}
        preserveAspectRatio="none"
        role="img"
        aria-label={`${all} jobs ended in the last ${minutes.length} minutes; at most ${max} in one minute.`}
      >
        <line x1="0" x2={W} y1={H - 0.5} y2={H - 0.5} class="axis" />
        {minutes.map((m, i) => {
          let top = H;
          const parts = (["succeeded", "failed", "canceled"] as const).map((k) => {
            const h = y(m[k]);
            top -= h;
            return h > 0 ? (
              <rect
                key={k}
                x={i * bw + bw * 0.1}
                width={bw * 0.8}
                y={top}
                height={h}
                class={`bar-${k}`}
              />
            ) : null;
          });
          return (
            <g key={i}>
              <title>
                {`${exactTime(m.at)}: ${m.succeeded} succeeded, ${m.failed} failed, ${m.canceled} canceled`}
              </title>
              <rect x={i * bw} width={bw} y={0} height={H} class="hit" />
              {parts}
            </g>
          );
        })}
      </svg>
      <figcaption>
        <span>{minutes[0] ? timeOf(minutes[0].at) : ""}</span>
        <span class="legend">
          <i class="key-succeeded" /> succeeded <i class="key-failed" /> failed{" "}
          <i class="key-canceled" /> canceled · peak {max}/min
        </span>
        <span>now</span>
      </figcaption>
    </figure>
  );
}

/**
 * The share of succeeded among succeeded and failed jobs, per minute, as a line over 0 to 100 %
 * (minutes where none ended leave a gap).
 */
export function SuccessRateChart(props: { minutes: MinuteCounts[] }) {
  const { minutes } = props;
  // Inset by a dot's radius so the first and last minutes are drawn whole.
  const step = (W - 8) / Math.max(1, minutes.length - 1);
  const segments: string[][] = [[]];
  minutes.forEach((m, i) => {
    const ended = m.succeeded + m.failed;
    if (ended === 0) {
      if (segments.at(-1)!.length) segments.push([]);
      return;
    }
    const rate = m.succeeded / ended;
    segments.at(-1)!.push(`${(4 + i * step).toFixed(1)},${(H - 2 - rate * (H - 4)).toFixed(1)}`);
  });
  const points = segments.filter((s) => s.length > 0);
  return (
    <figure class="chart" data-chart="success-rate">
      <svg
        viewBox={`0 0 ${W} ${H}`}
        preserveAspectRatio="none"
        role="img"
        aria-label="Success rate per minute, from 0 to 100 percent"
      >
        <line x1="0" x2={W} y1={2} y2={2} class="grid" />
        <line x1="0" x2={W} y1={H / 2} y2={H / 2} class="grid" />
        <line x1="0" x2={W} y1={H - 0.5} y2={H - 0.5} class="axis" />
        {points.map((p, i) =>
          p.length === 1 ? (
            <circle key={i} cx={p[0]!.split(",")[0]} cy={p[0]!.split(",")[1]} r="3" class="dot" />
          ) : (
            <polyline key={i} points={p.join(" ")} class="line" />
          ),
        )}
      </svg>
      <figcaption>
        <span>{minutes[0] ? timeOf(minutes[0].at) : ""}</span>
        <span class="legend">100 % top · 50 % middle</span>
        <span>now</span>
      </figcaption>
    </figure>
  );
}

function timeOf(d: Date): string {
  return d.toTimeString().slice(0, 5);
}
