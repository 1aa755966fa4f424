/**
 * `ringtrace inspect`: what a trace file holds and what it lost, per thread, as text or JSON.
 * Only formatting lives here; the numbers all come from the reader (summary, drops, states).
 */
import type { ScaledCounts, ThreadSummary, TraceDrop, TraceReader, TraceStateChange, TraceSummary } from '../file/reader.js';
import { PRIORITIES, type PriorityCounts } from '../shm/layout.js';

/** What `ringtrace inspect` prints: the reader's summary, its loss records and state changes. */
export interface Inspection {
  summary: TraceSummary;
  drops: TraceDrop[];
  states: TraceStateChange[];
  /** Per thread, its events by name scaled back up from pressure sampling; only when some thread
   * was sampled (it reads every event of the file). */
  scaled?: ScaledCounts[];
}

export function collectInspection(reader: TraceReader): Inspection {
  const summary = reader.summary();
  const sampled = summary.threads.some((t) => (t.droppedByReason.sampled ?? 0) > 0);
  return { summary, drops: reader.drops(), states: reader.states(), scaled: sampled ? reader.scaledCounts() : undefined };
}

/** The `--json` form. NaN timestamps (a loss with no time, a thread with no events) become null. */
export function inspectionJson(report: Inspection): string {
  return JSON.stringify(report, null, 2);
}

/** Timestamps in the file are ns since the tracer opened; people read ms. */
export const ms = (ns: number): string => (Number.isFinite(ns) ? (ns / 1e6).toFixed(3) : '-');

const range = (first: number, last: number): string =>
  Number.isFinite(first) || Number.isFinite(last) ? `${ms(first)}..${ms(last)}` : '-';

const byReason = (r: Partial<Record<string, number>>): string =>
  Object.entries(r)
    .filter(([, n]) => (n ?? 0) > 0)
    .map(([reason, n]) => `${reason}=${n}`)
    .join(' ') || '-';
/** A loss's events per priority; '?' when no priority is known (format 1-3, the drain's reasons). */
const byPriorityText = (p: PriorityCounts | undefined): string => (p === undefined ? '?' : byReason(p).replace(/^-$/, '?'));

/** Left-aligned text columns, right-aligned numeric ones. */
function table(rows: string[][], numeric: boolean[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (numeric[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** ✓ all balanced, ✗ some thread is not, ? some thread's balance is unknown (no end record). */
function balancedMark(s: TraceSummary): string {
  if (s.threads.some((t) => t.balanced === false)) return '✗';
  return s.threads.every((t) => t.balanced === true) ? '✓' : '?';
}

export interface FormatOptions {
  /** Show at most this many entries of the loss list (the rest are counted); default all. */
  maxDrops?: number;
  /** Show at most this many damaged regions (the rest are counted); default all. */
  maxDamage?: number;
}

export function formatInspection(report: Inspection, options: FormatOptions = {}): string {
  return [
    ...fileLines(report.summary, options),
    '',
    threadTable(report),
    RECORD_BYTES_LEGEND,
    '',
    balanceLine(report.summary),
    ...priorityLines(report.summary),
    ...scaledLines(report),
    '',
    ...lossLines(report, options),
  ].join('\n');
}

/** Where the file came from, whether it is complete, its damaged regions and the chunks lost to them. */
function fileLines(s: TraceSummary, options: FormatOptions): string[] {
  const out: string[] = [];
  const started = Number.isFinite(s.sessionStartEpochMs) ? new Date(s.sessionStartEpochMs).toISOString() : 'unknown';
  out.push(`trace    ${s.path}`);
  out.push(`format   version ${s.version}, session started ${started}; times are ms since the tracer opened`);
  out.push(`file     ${s.complete ? 'complete (footer present)' : 'INCOMPLETE: no footer (the tracer did not close the file)'}`);
  const shownDamage = options.maxDamage === undefined ? s.damaged : s.damaged.slice(0, options.maxDamage);
  for (const d of shownDamage) {
    out.push(
      `damage   at byte offset ${d.offset}: ${d.reason}; ${d.skippedBytes} bytes not read, ` +
        (d.resumedAt === undefined ? 'nothing intact after it' : `reading resumed at byte ${d.resumedAt}`),
    );
  }
  if (shownDamage.length < s.damaged.length)
    out.push(`damage   ... ${s.damaged.length - shownDamage.length} more damaged regions (ringtrace inspect --json lists them all)`);
  for (const t of s.threads) {
    if (!t.unreadable) continue;
    const ev = t.unreadable.events === undefined ? 'an unknown number of' : String(t.unreadable.events);
    out.push(
      `gap      thread ${t.thread} (${t.name}): ${t.unreadable.chunks} chunk(s) missing; ${ev} events (or their drop counts) were in damaged records`,
    );
  }
  return out;
}

/**
 * Byte columns count event records as the file stores them (ThreadSummary.payloadBytes is the
 * chunks' payload: the records), not the byte payloads given to recordBytes(); a thread without
 * any such payload still has 16 or 24 bytes per event. The legend under the table says so.
 */
export const RECORD_BYTES_LEGEND = 'record B: bytes of event records (16 B each, + 8 B for a value, + a byte payload padded to 8 B)';

const THREAD_COLUMNS: Array<[header: string, numeric: boolean]> = [
  ['#', true],
  ['thread', false],
  ['slot', true],
  ['events', true],
  ['record B', true],
  ['time range (ms)', false],
  ['attempted', true],
  ['dropped', true],
  ['by reason', false],
  ['record B dropped', true],
  ['states', true],
  ['end', false],
  ['balanced', false],
];

/** A row per thread and a total row. */
function threadTable(report: Inspection): string {
  const s = report.summary;
  const rows = s.threads.map((t) => [
    String(t.thread),
    t.name,
    String(t.slot),
    String(t.events),
    String(t.payloadBytes),
    range(t.firstTs, t.lastTs),
    t.attempted === undefined ? '?' : String(t.attempted),
    String(t.dropped),
    byReason(t.droppedByReason),
    String(t.bytesDropped),
    String(t.stateChanges),
    t.endReason ?? '(none)',
    threadBalance(t),
  ]);
  const T = s.totals;
  rows.push([
    '',
    `total (${T.threads})`,
    '',
    String(T.events),
    String(s.threads.reduce((n, t) => n + t.payloadBytes, 0)),
    '',
    String(T.attempted),
    String(T.dropped),
    byReason(T.droppedByReason),
    String(T.bytesDropped),
    String(report.states.length),
    '',
    balancedMark(s),
  ]);
  return table(
    [THREAD_COLUMNS.map(([h]) => h), ...rows],
    THREAD_COLUMNS.map(([, n]) => n),
  );
}

function threadBalance(t: ThreadSummary): string {
  if (t.balanced !== undefined) return t.balanced ? '✓' : '✗';
  return t.lastChunk ? `${t.lastChunk.balanced ? '✓' : '✗'} up to its last chunk (no end record)` : '? (no end record)';
}

function balanceLine(s: TraceSummary): string {
  const T = s.totals;
  const unknown = s.threads.filter((t) => t.balanced === undefined).length;
  const verdict = T.balanced
    ? 'yes'
    : s.threads.some((t) => t.balanced === false)
      ? 'NO'
      : `unknown for ${unknown} thread(s) without an end record`;
  return (
    `balanced: ${verdict} (attempted = events + dropped for every thread)` +
    (T.droppedAfterClose > 0 ? `; ${T.droppedAfterClose} events recorded after close were refused` : '')
  );
}

/**
 * Conservation per priority (format 4), for the threads with events or drops of a priority other
 * than normal: per priority, the events in the file and those dropped (their sum is what that
 * priority attempted), and the drops no priority is known for. Nothing when every event is normal.
 */
function priorityLines(s: TraceSummary): string[] {
  const uses = (t: ThreadSummary) =>
    t.eventsByPriority.critical + t.eventsByPriority.debug + t.droppedByPriority.critical + t.droppedByPriority.debug > 0;
  const threads = s.threads.filter(uses);
  if (threads.length === 0) return [];
  const rows = threads.map((t) => [
    `${t.thread} ${t.name}`,
    ...PRIORITIES.flatMap((p) => [String(t.eventsByPriority[p]), String(t.droppedByPriority[p])]),
    String(t.unattributedDrops),
    t.attempted === undefined ? '?' : String(t.attempted),
  ]);
  const head = ['thread', ...PRIORITIES.flatMap((p) => [`${p} kept`, `${p} dropped`]), 'unattributed', 'attempted'];
  return [
    '',
    'by priority (kept + dropped = attempted of that priority; attempted = their sum + unattributed):',
    table([head, ...rows], [false, ...head.slice(1).map(() => true)]).replace(/^/gm, '  '),
  ];
}

/**
 * Sampling under pressure (format 5): for each sampled thread, per event name, the events in the
 * file and what they scale back up to (each chunk's normal instants, values and payloads count
 * (kept + sampled) / kept; other events count 1).
 */
function scaledLines(report: Inspection): string[] {
  if (!report.scaled) return [];
  const rows: string[][] = [];
  for (const sc of report.scaled) {
    if (sc.sampledOut === 0) continue;
    const t = report.summary.threads[sc.thread];
    for (const [name, kept] of Object.entries(sc.keptByName)) {
      rows.push([`${t.thread} ${t.name}`, name, String(kept), String(Math.round(sc.byName[name]))]);
    }
    if (sc.unplaced > 0) rows.push([`${t.thread} ${t.name}`, '(no chunk to scale)', '0', String(sc.unplaced)]);
  }
  return [
    '',
    "sampled under pressure (scaled = kept x each chunk's rate, (kept + sampled) / kept):",
    table([['thread', 'name', 'kept', 'scaled'], ...rows], [false, false, true, true]).replace(/^/gm, '  '),
  ];
}

/** The loss records, one a line (at most options.maxDrops of them). */
function lossLines(report: Inspection, options: FormatOptions): string[] {
  const { summary: s, drops } = report;
  if (drops.length === 0) return ['losses: none'];
  const names = new Map(s.threads.map((t) => [t.thread, t.name]));
  const shown = options.maxDrops === undefined ? drops : drops.slice(0, options.maxDrops);
  const lossRows = shown.map((d) => [
    names.get(d.thread) ?? `#${d.thread}`,
    d.reason,
    String(d.events),
    String(d.bytes),
    range(d.firstTs, d.lastTs),
    d.chunkSeq < 0 ? 'end record' : `chunk ${d.chunkSeq}`,
    byPriorityText(d.byPriority),
  ]);
  const lossTable = table(
    [['thread', 'reason', 'events', 'record B', 'time range (ms)', 'reported by', 'by priority'], ...lossRows],
    [false, false, true, true, false, false, false],
  );
  const out = [`losses (${drops.length}):`, lossTable.replace(/^/gm, '  ')];
  if (shown.length < drops.length) out.push(`  ... ${drops.length - shown.length} more (ringtrace inspect --json lists them all)`);
  return out;
}
