/**
 * `ringtrace inspect`: what a trace file holds and what it lost, per thread, as text or JSON.
 * Only formatting lives here; the numbers all come from the reader (summary, drops, states).
 */
import type { TraceDrop, TraceReader, TraceStateChange, TraceSummary } from '../file/reader.js';

export interface InspectReport {
  summary: TraceSummary;
  drops: TraceDrop[];
  states: TraceStateChange[];
}

export function collectReport(reader: TraceReader): InspectReport {
  return { summary: reader.summary(), drops: reader.drops(), states: reader.states() };
}

/** The `--json` form. NaN timestamps (a loss with no time, a thread with no events) become null. */
export function reportJson(report: InspectReport): string {
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

export function formatReport(report: InspectReport, options: FormatOptions = {}): string {
  const { summary: s, drops } = report;
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
  out.push('');

  const names = new Map(s.threads.map((t) => [t.thread, t.name]));
  const header = [
    '#',
    'thread',
    'slot',
    'events',
    'payload B',
    'time range (ms)',
    'attempted',
    'dropped',
    'by reason',
    'bytes dropped',
    'states',
    'end',
    'balanced',
  ];
  const numeric = [true, false, true, true, true, false, true, true, false, true, true, false, false];
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
    t.balanced !== undefined
      ? t.balanced
        ? '✓'
        : '✗'
      : t.lastChunk
        ? `${t.lastChunk.balanced ? '✓' : '✗'} up to its last chunk (no end record)`
        : '? (no end record)',
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
  out.push(table([header, ...rows], numeric));
  out.push('');
  const unknown = s.threads.filter((t) => t.balanced === undefined).length;
  const verdict = T.balanced
    ? 'yes'
    : s.threads.some((t) => t.balanced === false)
      ? 'NO'
      : `unknown for ${unknown} thread(s) without an end record`;
  out.push(
    `balanced: ${verdict} (attempted = events + dropped for every thread)` +
      (T.droppedAfterClose > 0 ? `; ${T.droppedAfterClose} events recorded after close were refused` : ''),
  );

  out.push('');
  if (drops.length === 0) {
    out.push('losses: none');
  } else {
    const shown = options.maxDrops === undefined ? drops : drops.slice(0, options.maxDrops);
    out.push(`losses (${drops.length}):`);
    const lossRows = shown.map((d) => [
      names.get(d.thread) ?? `#${d.thread}`,
      d.reason,
      String(d.events),
      String(d.bytes),
      range(d.firstTs, d.lastTs),
      d.chunkSeq < 0 ? 'end record' : `chunk ${d.chunkSeq}`,
    ]);
    const lossTable = table(
      [['thread', 'reason', 'events', 'bytes', 'time range (ms)', 'reported by'], ...lossRows],
      [false, false, true, true, false, false],
    );
    out.push(lossTable.replace(/^/gm, '  '));
    if (shown.length < drops.length) out.push(`  ... ${drops.length - shown.length} more (ringtrace inspect --json lists them all)`);
  }
  return out.join('\n');
}
