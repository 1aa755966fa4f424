/**
 * A self-contained HTML report of a trace (no scripts, no network): written events/s per thread
 * over time on a log axis (with the attempted peak in a note), drops over time by thread (losses
 * without a time listed apart), the backpressure state of each thread over time, and a totals
 * table with the conservation check. Charts are inline SVG computed here, so the page renders
 * the same anywhere, including a headless browser.
 */
import { writeFileSync } from 'node:fs';
import { REASONS, type DropReason, type PriorityCounts } from '../shm/layout.js';
import { STATE_NAMES, type StateName } from '../shm/backpressure.js';
import { openTrace, type TraceReader, type TraceSummary } from '../file/reader.js';
import { FiniteTimes } from './finite-times.js';

const BUCKETS = 120;
const W = 960;
const PLOT_H = 220;
const MARGIN = { left: 70, right: 160, top: 20, bottom: 36 };
const PALETTE = ['#4269d0', '#efb118', '#ff725c', '#6cc5b0', '#3ca951', '#ff8ab7', '#a463f2', '#97bbf5', '#9c6b4e', '#9498a0'];
const STATE_COLORS: Record<StateName, string> = { normal: '#59a14f', pressure: '#edc948', dropping: '#e15759', recovery: '#4e79a7' };

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (n: number): string => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: 1 }) : '–');
/** A bucket width: "16.7 ms", "250 µs". */
const duration = (ns: number): string => (ns >= 1e6 ? `${fmt(ns / 1e6)} ms` : ns >= 1e3 ? `${fmt(ns / 1e3)} µs` : `${fmt(ns)} ns`);

/** What the written-rate chart leaves out: the attempted rate, when events were dropped. */
function attemptedNote(d: HtmlReportData): string {
  const dropped = d.summary.totals.dropped;
  let peak = 0;
  let at = 0;
  d.attempted.forEach((v, k) => {
    if (v > peak) [peak, at] = [v, k];
  });
  const written = Math.max(0, ...d.threads.flatMap((t) => t.rates));
  const base = `<p class="note" id="rate-note">Written events only: events dropped are not in these lines. Buckets of ${duration(d.bucketNs)}.`;
  if (dropped === 0) return `${base} Nothing was dropped, so this is also the attempted rate.</p>`;
  const when = (d.t0 + (at + 0.5) * d.bucketNs) / 1e6;
  return `${base} Attempted (written + dropped, all threads) peaked at about ${fmt(Math.round(peak))} events/s around ${fmt(Math.round(when))} ms (a loss counts evenly over the time it covers; losses without a time are listed under the drops chart), against a written peak of ${fmt(Math.round(written))} events/s for one thread; the dropped part is in the next chart.</p>`;
}

/** What the HTML report draws: the trace in fixed time buckets, with its summary. */
export interface HtmlReportData {
  title: string;
  t0: number;
  t1: number;
  bucketNs: number;
  /** Events written to the file per second, per thread and bucket. */
  threads: Array<{ name: string; rates: number[] }>;
  /** Events attempted (written + dropped) per second, all threads, per bucket; losses are spread
   * evenly over the time they cover, as in `drops` (untimed losses are in no bucket). */
  attempted: number[];
  /** Events dropped per bucket (not per second), by reason: losses with a time only. */
  drops: Record<DropReason, number[]>;
  /** The same losses per bucket by thread (index as in `threads`). */
  dropsByThread: number[][];
  /** Losses the file gives no time for (unflushed, thread_exit, ...): shown apart, in no bucket. */
  untimedDrops: Array<{ thread: string; reason: DropReason; events: number }>;
  states: Array<{ name: string; spans: Array<{ from: number; to: number; state: StateName }> }>;
  /** Event and state-change times in the file that are not finite numbers (drawn at their thread's last finite time). */
  nonFiniteTimes: number;
  summary: ReturnType<TraceReader['summary']>;
}

/**
 * The trace's time range from what the index knows (threads' first and last events, losses,
 * state changes), finite times only. A thread whose first or last event time is not a finite
 * number (a caller's recordAt timestamp) hides its finite ones: then the events are read for them.
 */
function timeRange(r: TraceReader, s: TraceSummary): { t0: number; t1: number } {
  let t0 = Infinity;
  let t1 = -Infinity;
  const take = (ts: number) => {
    if (!Number.isFinite(ts)) return;
    if (ts < t0) t0 = ts;
    if (ts > t1) t1 = ts;
  };
  let hidden = false;
  for (const t of r.threads) {
    take(t.firstTs);
    take(t.lastTs);
    hidden ||= s.threads[t.index].events > 0 && !(Number.isFinite(t.firstTs) && Number.isFinite(t.lastTs));
  }
  for (const d of r.drops()) {
    take(d.firstTs);
    take(d.lastTs);
  }
  for (const c of r.states()) take(c.ts);
  if (hidden) for (const e of r.events()) take(e.ts);
  return Number.isFinite(t0) ? { t0, t1 } : { t0: 0, t1: 0 };
}

/** Aggregates a trace into fixed time buckets (one streaming pass over the events). */
export function htmlReportData(r: TraceReader): HtmlReportData {
  const s = r.summary();
  const { t0, t1 } = timeRange(r, s);
  const bucketNs = Math.max(1, (t1 - t0) / BUCKETS);
  const bucket = (ts: number) => Math.min(BUCKETS - 1, Math.max(0, Math.floor((ts - t0) / bucketNs)));
  const counts = r.threads.map(() => new Array<number>(BUCKETS).fill(0));
  // A time that is not a finite number counts at its thread's last finite time (and is noted).
  const times = new FiniteTimes(r.threads, t0);
  for (const e of r.events()) counts[e.thread][bucket(times.at(e.thread, e.ts))]++;
  const perSecond = 1e9 / bucketNs;
  const drops = Object.fromEntries(REASONS.map((x) => [x, new Array<number>(BUCKETS).fill(0)])) as Record<DropReason, number[]>;
  const dropsByThread = r.threads.map(() => new Array<number>(BUCKETS).fill(0));
  const untimedDrops: HtmlReportData['untimedDrops'] = [];
  for (const d of r.drops()) {
    // Spread a loss evenly over the time it covers (all at one point when only one is known); a
    // loss with no time at all is listed apart rather than piled into some bucket.
    if (!Number.isFinite(d.firstTs) && !Number.isFinite(d.lastTs)) {
      untimedDrops.push({ thread: r.threads[d.thread].name, reason: d.reason, events: d.events });
      continue;
    }
    const a = Number.isFinite(d.firstTs) ? d.firstTs : d.lastTs;
    const b = Number.isFinite(d.lastTs) ? d.lastTs : a;
    const first = bucket(a);
    const last = bucket(b);
    for (let k = first; k <= last; k++) {
      drops[d.reason][k] += d.events / (last - first + 1);
      dropsByThread[d.thread][k] += d.events / (last - first + 1);
    }
  }
  const states = r.threads.map((t) => ({ name: t.name, spans: [] as Array<{ from: number; to: number; state: StateName }> }));
  const current = r.threads.map(() => ({ state: 'normal' as StateName, since: NaN }));
  for (const c of r.states()) {
    const cur = current[c.thread];
    const ts = times.at(c.thread, c.ts);
    const from = Number.isNaN(cur.since) ? r.threads[c.thread].registeredTs : cur.since;
    states[c.thread].spans.push({ from, to: ts, state: c.from });
    cur.state = c.to;
    cur.since = ts;
  }
  r.threads.forEach((t, i) => {
    const cur = current[i];
    const end = Number.isFinite(t.lastTs) ? Math.max(t.lastTs, cur.since || t1) : t1;
    states[i].spans.push({ from: Number.isNaN(cur.since) ? t.registeredTs : cur.since, to: end, state: cur.state });
  });
  const attempted = new Array<number>(BUCKETS).fill(0);
  for (let k = 0; k < BUCKETS; k++) {
    for (const c of counts) attempted[k] += c[k];
    for (const x of REASONS) attempted[k] += drops[x][k];
    attempted[k] *= perSecond;
  }
  return {
    title: r.path,
    t0,
    t1,
    bucketNs,
    threads: r.threads.map((t, i) => ({ name: t.name, rates: counts[i].map((n) => n * perSecond) })),
    attempted,
    drops,
    dropsByThread,
    untimedDrops,
    states,
    nonFiniteTimes: times.replaced,
    summary: s,
  };
}

/** About `count` round tick values (1, 2 or 5 × a power of ten apart) from lo to hi. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw) ?? 10 * p;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.round(v / step) * step);
  return ticks;
}

/** A tick label: 1,500 / 20k / 3M (no fractions past what the step needs). */
const tickLabel = (v: number): string =>
  Math.abs(v) >= 1e6
    ? `${fmt(v / 1e6)}M`
    : Math.abs(v) >= 1e4
      ? `${fmt(v / 1e3)}k`
      : v.toLocaleString('en-US', { maximumFractionDigits: 3 });

/** The y axis: `linear` max (ticks at round values) or `log` decades up to a power of ten. */
type YAxis = { kind: 'linear'; max: number } | { kind: 'log'; max: number } | undefined;

function yTicks(y: YAxis, x0: number, y0: number, height: number): string {
  if (y === undefined) return '';
  const at =
    y.kind === 'log'
      ? Array.from({ length: Math.round(Math.log10(y.max)) + 1 }, (_, k) => [10 ** k, (k / Math.log10(y.max)) * height])
      : niceTicks(0, y.max).map((v) => [v, (v / y.max) * height]);
  return at
    .map(
      ([v, h]) =>
        `<line x1="${x0}" y1="${(y0 - h).toFixed(1)}" x2="${W - MARGIN.right}" y2="${(y0 - h).toFixed(1)}" stroke="#eee"/>` +
        `<text x="${x0 - 6}" y="${(y0 - h + 4).toFixed(1)}" text-anchor="end">${tickLabel(v)}</text>`,
    )
    .join('');
}

function axes(d: HtmlReportData, y: YAxis, yLabel: string, height = PLOT_H): string {
  const x0 = MARGIN.left;
  const x1 = W - MARGIN.right;
  const y0 = MARGIN.top + height;
  const ms = (d.t1 - d.t0) / 1e6;
  const span = d.t1 - d.t0;
  const ticks = niceTicks(d.t0 / 1e6, d.t1 / 1e6)
    .map((t) => {
      const x = span > 0 ? x0 + ((t * 1e6 - d.t0) / span) * (x1 - x0) : x0;
      return `<line x1="${x.toFixed(1)}" y1="${y0}" x2="${x.toFixed(1)}" y2="${y0 + 4}" stroke="#555"/><text x="${x.toFixed(1)}" y="${y0 + 16}" text-anchor="middle">${tickLabel(t)} ms</text>`;
    })
    .join('');
  return (
    yTicks(y, x0, y0, height) +
    `<line x1="${x0}" y1="${y0}" x2="${x1}" y2="${y0}" stroke="#555"/><line x1="${x0}" y1="${MARGIN.top}" x2="${x0}" y2="${y0}" stroke="#555"/>` +
    ticks +
    `<text x="${x0}" y="${MARGIN.top - 6}">${esc(yLabel)}</text><text x="${x1}" y="${y0 + 30}" text-anchor="end">time since the tracer opened (${fmt(ms)} ms in all)</text>`
  );
}

function legend(items: Array<[string, string]>): string {
  return items
    .map(
      ([label, color], i) =>
        `<rect x="${W - MARGIN.right + 12}" y="${MARGIN.top + i * 16}" width="10" height="10" fill="${color}"/><text x="${W - MARGIN.right + 26}" y="${MARGIN.top + i * 16 + 9}">${esc(label)}</text>`,
    )
    .join('');
}

function svg(id: string, height: number, body: string, label: string): string {
  return `<svg id="${id}" role="img" aria-label="${esc(label)}" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" font-family="sans-serif" font-size="11">${body}</svg>`;
}

/**
 * Written events/s per thread on a log axis: a burst at a million events/s and a steady thread
 * at a hundred are both readable. A bucket with no events sits on the axis.
 */
function ratesChart(d: HtmlReportData): string {
  const max = 10 ** Math.max(1, Math.ceil(Math.log10(Math.max(10, ...d.threads.flatMap((t) => t.rates)))));
  const decades = Math.log10(max);
  const yOf = (v: number) => MARGIN.top + PLOT_H - (v <= 1 ? 0 : (Math.log10(v) / decades) * PLOT_H);
  const x0 = MARGIN.left;
  const dx = (W - MARGIN.right - MARGIN.left) / BUCKETS;
  const lines = d.threads
    .map((t, i) => {
      const pts = t.rates.map((v, k) => `${(x0 + (k + 0.5) * dx).toFixed(1)},${yOf(v).toFixed(1)}`).join(' ');
      return `<polyline class="series" fill="none" stroke="${PALETTE[i % PALETTE.length]}" stroke-width="1.5" points="${pts}"><title>${esc(t.name)}</title></polyline>`;
    })
    .join('');
  const h = MARGIN.top + PLOT_H + MARGIN.bottom;
  return svg(
    'events-rate',
    h,
    axes(d, { kind: 'log', max }, 'written events/s per thread (events kept in the file), log scale') +
      lines +
      legend(d.threads.map((t, i) => [t.name, PALETTE[i % PALETTE.length]])),
    'events written per second per thread over time',
  );
}

/** Dropped events per bucket, stacked by thread (the thread colours of the rate chart); each
 * bar's tooltip names the thread. Losses without a time are listed under the chart instead. */
function dropsChart(d: HtmlReportData): string {
  const totals = new Array<number>(BUCKETS).fill(0);
  for (const t of d.dropsByThread) t.forEach((v, k) => (totals[k] += v));
  const ticks = niceTicks(0, Math.max(1, ...totals));
  const maxY = Math.max(1, ticks[ticks.length - 1], ...totals);
  const x0 = MARGIN.left;
  const dx = (W - MARGIN.right - MARGIN.left) / BUCKETS;
  const base = new Array<number>(BUCKETS).fill(0);
  let bars = '';
  d.dropsByThread.forEach((per, i) => {
    const name = d.threads[i].name;
    per.forEach((v, k) => {
      if (v <= 0) return;
      const h = (v / maxY) * PLOT_H;
      base[k] += h;
      bars += `<rect class="drop" x="${(x0 + k * dx).toFixed(1)}" y="${(MARGIN.top + PLOT_H - base[k]).toFixed(1)}" width="${Math.max(1, dx - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${PALETTE[i % PALETTE.length]}"><title>${esc(name)}: ${fmt(v)}</title></rect>`;
    });
  });
  const used = d.threads
    .map((t, i) => [t.name, PALETTE[i % PALETTE.length]] as [string, string])
    .filter((_, i) => d.dropsByThread[i].some((v) => v > 0));
  const h = MARGIN.top + PLOT_H + MARGIN.bottom;
  return svg(
    'drops',
    h,
    axes(d, { kind: 'linear', max: maxY }, `events dropped per ${duration(d.bucketNs)} bucket, by thread`) + bars + legend(used),
    'dropped events over time by thread',
  );
}

/** Losses the file gives no time for, apart from the chart (they would invent a peak in a bucket). */
function untimedNote(d: HtmlReportData): string {
  if (d.untimedDrops.length === 0) return '';
  const rows = d.untimedDrops.map((u) => `<tr><td>${esc(u.thread)}</td><td>${u.reason}</td><td>${fmt(u.events)}</td></tr>`).join('');
  return `<p class="note" id="untimed-note">Losses without a time (the file cannot place them; not in the chart or the attempted rate):</p>
<table id="untimed-drops"><thead><tr><th>thread</th><th>reason</th><th>events</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function statesChart(d: HtmlReportData): string {
  const row = 18;
  // At least as tall as the legend beside it (4 states x 16 px).
  const height = Math.max(STATE_NAMES.length * 16, d.states.length * row);
  const x0 = MARGIN.left;
  const span = Math.max(1, d.t1 - d.t0);
  const xOf = (ts: number) => x0 + ((Math.min(Math.max(ts, d.t0), d.t1) - d.t0) / span) * (W - MARGIN.right - MARGIN.left);
  let body = '';
  d.states.forEach((t, i) => {
    const y = MARGIN.top + i * row;
    body += `<text x="${x0 - 6}" y="${y + 12}" text-anchor="end">${esc(t.name)}</text>`;
    for (const s of t.spans) {
      const a = xOf(s.from);
      const b = Math.max(a + 1, xOf(s.to));
      body += `<rect class="state" x="${a.toFixed(1)}" y="${y + 2}" width="${(b - a).toFixed(1)}" height="${row - 4}" fill="${STATE_COLORS[s.state]}"><title>${esc(t.name)}: ${s.state}</title></rect>`;
    }
  });
  const h = MARGIN.top + height + MARGIN.bottom;
  return svg(
    'states',
    h,
    axes(d, undefined, 'backpressure state per thread', height) + body + legend(STATE_NAMES.map((s) => [s, STATE_COLORS[s]])),
    'backpressure state of each thread over time',
  );
}

/** Drops per priority, the non-zero ones (format 4; the drain's reasons have none). */
const priorities = (p: PriorityCounts): string =>
  Object.entries(p)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${fmt(n)}`)
    .join(', ') || '–';

function totalsTable(d: HtmlReportData): string {
  const s = d.summary;
  const rows = s.threads
    .map((t) => {
      const reasons =
        Object.entries(t.droppedByReason)
          .map(([r, n]) => `${r} ${fmt(n)}`)
          .join(', ') || '–';
      const ok = t.balanced === undefined ? '?' : t.balanced ? '✓' : '✗';
      return `<tr><td>${esc(t.name)}</td><td>${t.slot}</td><td>${fmt(t.attempted ?? NaN)}</td><td>${fmt(t.events)}</td><td>${fmt(t.dropped)}</td><td>${esc(reasons)}</td><td>${esc(priorities(t.droppedByPriority))}</td><td>${fmt(t.bytesDropped)}</td><td>${t.stateChanges}</td><td>${esc(t.endReason ?? '–')}</td><td class="${t.balanced ? 'ok' : 'bad'}">${ok}</td></tr>`;
    })
    .join('');
  const T = s.totals;
  return `<table id="totals"><thead><tr><th>thread</th><th>slot</th><th>attempted</th><th>in file</th><th>dropped</th><th>by reason</th><th>by priority</th><th>bytes dropped</th><th>state changes</th><th>end</th><th>attempted = in file + dropped</th></tr></thead><tbody>${rows}</tbody>
<tfoot><tr><td>total</td><td></td><td>${fmt(T.attempted)}</td><td>${fmt(T.events)}</td><td>${fmt(T.dropped)}</td><td>${esc(
    Object.entries(T.droppedByReason)
      .map(([r, n]) => `${r} ${fmt(n)}`)
      .join(', ') || '–',
  )}</td><td>${esc(priorities(T.droppedByPriority))}</td><td>${fmt(T.bytesDropped)}</td><td></td><td></td><td class="${T.balanced ? 'ok' : 'bad'}">${T.balanced ? '✓' : '✗'}</td></tr></tfoot></table>`;
}

/** Says how many times in the file were not finite numbers, if any (see htmlReportData). */
function timeNote(d: HtmlReportData): string {
  if (d.nonFiniteTimes === 0) return '';
  return `\n<p class="bad" id="time-note">${fmt(d.nonFiniteTimes)} times in the file are not finite numbers (a timestamp given to recordAt); each is drawn at its thread's last finite time before it.</p>`;
}

/** Damaged regions listed one by one in the report; the rest are counted. */
const MAX_DAMAGE_SHOWN = 20;

export function renderReport(d: HtmlReportData): string {
  const s = d.summary;
  const status = s.damage
    ? s.damaged
        .slice(0, MAX_DAMAGE_SHOWN)
        .map(
          (d) =>
            `<p class="bad">The file is damaged at byte ${d.offset} (${esc(d.reason)}); ${fmt(d.skippedBytes)} bytes were not read${d.resumedAt === undefined ? '' : `, reading resumed at byte ${d.resumedAt}`}.</p>`,
        )
        .concat(
          s.damaged.length > MAX_DAMAGE_SHOWN
            ? [`<p class="bad">... and ${fmt(s.damaged.length - MAX_DAMAGE_SHOWN)} more damaged regions.</p>`]
            : [],
        )
        .join('\n')
    : s.complete
      ? '<p>The file is complete.</p>'
      : '<p class="bad">The file has no footer: the tracer did not close it.</p>';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringtrace report: ${esc(d.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; } th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } .ok { color: #2a7d2a; } .bad { color: #b00020; }
.note { font-size: 13px; color: #555; }
svg text { fill: #333; }
</style></head><body>
<h1>ringtrace report</h1>
<p>${esc(d.title)} — format v${s.version}, ${s.totals.threads} threads, ${fmt(s.totals.events)} events in the file, ${fmt(s.totals.dropped)} dropped${s.totals.droppedAfterClose ? `, ${fmt(s.totals.droppedAfterClose)} after close` : ''}.</p>
${status}${timeNote(d)}
<h2>Written events per second, per thread</h2>
${ratesChart(d)}
${attemptedNote(d)}
<h2>Drops over time, by thread (buckets of ${duration(d.bucketNs)})</h2>
${dropsChart(d)}
${untimedNote(d)}
<h2>Backpressure state timeline</h2>
${statesChart(d)}
<h2>Totals and conservation check</h2>
${totalsTable(d)}
</body></html>
`;
}

/** Writes the HTML report of the trace at `tracePath` to `outPath`. */
export function writeReport(tracePath: string, outPath: string): HtmlReportData {
  const data = htmlReportData(openTrace(tracePath));
  writeFileSync(outPath, renderReport(data));
  return data;
}
