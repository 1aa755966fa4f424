/**
 * `ringtrace export`: a trace as Chrome trace event JSON (Perfetto UI, chrome://tracing) or as
 * JSON lines. Output is streamed: events come from the reader's generator chunk by chunk and go
 * out in ~64 KiB writes that wait for 'drain', so a trace larger than memory exports fine.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { STATE_NAMES, type StateName } from '../shm/backpressure.js';
import type { TraceDrop, TraceEvent, TraceReader, TraceStateChange, TraceThread } from '../file/reader.js';
import { FiniteTimes } from './finite-times.js';
import { AsyncMatcher, LossWindows, SliceMatcher, type AsyncOut, type SliceOut } from './spans.js';
import { decodeOtelEvent, otelChromeEvents, otelJsonlField } from './otel-view.js';

export const EXPORT_FORMATS = ['chrome', 'jsonl'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportCounts {
  events: number;
  drops: number;
  states: number;
}

const BATCH_BYTES = 64 * 1024;

/** Collects small strings and writes them in batches, honouring the stream's backpressure. */
class BatchedOutput {
  private parts: string[] = [];
  private size = 0;
  constructor(private readonly out: Writable) {}

  async push(s: string): Promise<void> {
    this.parts.push(s);
    this.size += s.length;
    if (this.size >= BATCH_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const chunk = this.parts.join('');
    this.parts = [];
    this.size = 0;
    // once() rejects if the stream emits 'error' while we wait.
    if (!this.out.write(chunk)) await once(this.out, 'drain');
  }
}

export async function exportTrace(
  reader: TraceReader,
  format: ExportFormat,
  out: Writable,
  options: ExportOptions = {},
): Promise<ExportCounts> {
  const o = new BatchedOutput(out);
  const cap = options.payloadCap ?? DEFAULT_PAYLOAD_CAP;
  const counts = format === 'chrome' ? await writeChrome(reader, o, cap) : await writeJsonl(reader, o, cap);
  await o.flush();
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Chrome trace event format (the mapping is documented in docs/design/export.md)

const PID = 1;
const us = (ns: number): number => ns / 1000;
/** µs of a ns time, or null when the file does not know it (NaN). */
const usOrNull = (ns: number): number | null => (Number.isFinite(ns) ? ns / 1000 : null);
const STATE_CODE: Record<string, number> = Object.fromEntries(STATE_NAMES.map((n, i) => [n, i]));
/** The state counter's values, as written in the export's metadata. */
export const STATE_CODES: Record<string, StateName> = Object.fromEntries(STATE_NAMES.map((n, i) => [String(i), n]));
/** Slice colours for chrome://tracing (its reserved colour names; Perfetto colours by name). */
const STATE_CNAME: Record<StateName, string> = { normal: 'good', pressure: 'yellow', dropping: 'terrible', recovery: 'olive' };
/** Suffixes of the extra per-thread tracks (thread_name of their pseudo thread). */
export const BACKPRESSURE_TRACK_SUFFIX = ' backpressure';
export const LOSS_TRACK_SUFFIX = ' losses';
/** The instant that flags a counter sample drawn at another time than the file's (not finite). */
export const NON_FINITE_TIME = 'ringtrace.non-finite time';

/** Where on the timeline a loss goes: its last time, else its first, else the thread's last event. */
function dropTs(d: TraceDrop, t: TraceThread): number {
  for (const ts of [d.lastTs, d.firstTs, t.lastTs, t.registeredTs]) if (Number.isFinite(ts)) return ts;
  return 0;
}

const firstFinite = (...xs: number[]): number => xs.find((x) => Number.isFinite(x)) ?? NaN;
const maxFinite = (...xs: number[]): number => {
  const finite = xs.filter((x) => Number.isFinite(x));
  return finite.length > 0 ? Math.max(...finite) : NaN;
};

/**
 * A slice from `fromNs` to `toNs`, on whole nanoseconds: Perfetto rounds µs to ns, so slices
 * that meet (one state's end is the next one's start) still meet exactly after the import
 * instead of overlapping by a rounding error (which Perfetto would take for nesting).
 */
function slice(fromNs: number, toNs: number): { ts: number; dur: number } {
  const a = Math.round(fromNs);
  const b = Math.max(a, Math.round(toNs));
  return { ts: a / 1000, dur: (b - a) / 1000 };
}

/** Each thread's backpressure states as spans: from registration to its last known time. */
export function stateSpans(
  reader: TraceReader,
  states: readonly TraceStateChange[] = reader.states(),
): Array<Array<{ from: number; to: number; state: StateName; entered: StateName | null }>> {
  const byThread = reader.threads.map(() => [] as TraceStateChange[]);
  for (const c of states) byThread[c.thread]?.push(c);
  const lastDrop = reader.threads.map(() => NaN);
  for (const d of reader.drops()) lastDrop[d.thread] = maxFinite(lastDrop[d.thread], d.lastTs, d.firstTs);
  return reader.threads.map((t, i) => {
    const changes = byThread[i];
    const spans: Array<{ from: number; to: number; state: StateName; entered: StateName | null }> = [];
    let since = firstFinite(t.registeredTs, t.firstTs, changes[0]?.ts);
    let entered: StateName | null = null;
    for (const c of changes) {
      if (Number.isFinite(since)) spans.push({ from: since, to: c.ts, state: c.from, entered });
      since = c.ts;
      entered = c.from;
    }
    const state = changes.length > 0 ? changes[changes.length - 1].to : 'normal';
    const end = maxFinite(t.lastTs, since, lastDrop[i]);
    if (Number.isFinite(since)) spans.push({ from: since, to: end, state, entered });
    return spans;
  });
}

/*
 * Counters ("C") are process-scoped in the Chrome format: two threads' "dropped events" would
 * share one track. The format combines a counter's `name` with its `id`, so every counter here
 * carries the thread's name as `id` to get one track per thread while keeping the names stable.
 *
 * Slices on one thread track must nest. The thread's own track holds its begin/end slices, which
 * losses cut (a B whose E was dropped, or the reverse), and one loss record can span kept events
 * (drop-oldest keeps the newest rings of a burst). So the backpressure states and the loss spans
 * go on tracks of their own: pseudo threads named "<thread> backpressure" and "<thread> losses".
 */
async function writeChrome(reader: TraceReader, o: BatchedOutput, cap: number): Promise<ExportCounts> {
  const tracks = new ChromeTracks(o, reader.threads);
  await o.push('{"traceEvents":[');
  await tracks.emit({ name: 'process_name', cat: CAT.meta, ph: 'M', pid: PID, tid: 0, args: { name: `ringtrace ${reader.path}` } }, true);
  for (const t of reader.threads) {
    await tracks.name(tracks.tid(t.index), t.name, t.index * SORT_STRIDE);
    await tracks.name(tracks.stateTid[t.index], t.name + BACKPRESSURE_TRACK_SUFFIX, t.index * SORT_STRIDE + 1);
  }
  const times = new FiniteTimes(reader.threads);
  const events = await writeChromeEvents(reader, tracks, times, cap);
  const drops = reader.drops();
  await writeChromeLosses(tracks, drops);
  const states = reader.states();
  await writeChromeBackpressure(reader, tracks, states, times);
  await writeChromeGaps(reader, tracks);
  await o.push(`\n],\n"displayTimeUnit":"ns",\n"metadata":${JSON.stringify(chromeMetadata(reader))}}\n`);
  return { events, drops: drops.length, states: states.length };
}

/** Each thread's tracks sort together: the thread, its backpressure, its losses. */
const SORT_STRIDE = 1000;

/** The tracks of one Chrome export: a tid per thread, pseudo threads for the extra tracks after them. */
class ChromeTracks {
  readonly stateTid: number[];
  private nextTid: number;
  constructor(
    private readonly o: BatchedOutput,
    readonly threads: readonly TraceThread[],
  ) {
    this.nextTid = threads.length + 1;
    this.stateTid = threads.map(() => this.nextTid++);
  }

  tid(thread: number): number {
    return thread + 1;
  }

  /** A new pseudo thread. */
  newTid(): number {
    return this.nextTid++;
  }

  private flowIds = 0;
  nextFlowId(): number {
    return ++this.flowIds;
  }

  emit(e: object, first = false): Promise<void> {
    return this.o.push((first ? '\n' : ',\n') + JSON.stringify(e));
  }

  async name(tid: number, name: string, sortIndex: number): Promise<void> {
    await this.emit({ name: 'thread_name', cat: CAT.meta, ph: 'M', pid: PID, tid, args: { name } });
    await this.emit({ name: 'thread_sort_index', cat: CAT.meta, ph: 'M', pid: PID, tid, args: { sort_index: sortIndex } });
  }
}

/** `args.fileTs` for an event drawn at another time than the file's, which is not a finite number. */
const fileTsFlag = (drawnTs: number, fileTs: number): { fileTs: string } | undefined =>
  drawnTs === fileTs ? undefined : { fileTs: String(fileTs) };

/** Categories: every event has one, so a viewer can filter by it. */
export const CAT = {
  event: 'ringtrace.event',
  value: 'ringtrace.value',
  slice: 'ringtrace.slice',
  async: 'ringtrace.async',
  link: 'ringtrace.link',
  loss: 'ringtrace.loss',
  backpressure: 'ringtrace.backpressure',
  damage: 'ringtrace.damage',
  meta: '__metadata',
} as const;

/** Options of the export. */
export interface ExportOptions {
  /** Bytes of each payload written into the export (UTF-8 text when valid, else hex); the rest is
   * left out and `payloadTruncated` says so. Default 256. */
  payloadCap?: number;
}
export const DEFAULT_PAYLOAD_CAP = 256;
/** A payload is at most 16 MiB - 1 bytes. */
export const MAX_PAYLOAD_CAP = 0xffffff;

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A payload as export fields: UTF-8 text if the whole payload is valid UTF-8 (capped on a
 * character boundary), else hex of the first `cap` bytes. */
export function payloadFields(payload: Uint8Array, cap: number): Record<string, string | number | boolean> {
  const f: Record<string, string | number | boolean> = { bytes: payload.length };
  let text: string | undefined;
  try {
    text = fatalUtf8.decode(payload);
  } catch {
    text = undefined;
  }
  if (text !== undefined) {
    let shown = text;
    if (payload.length > cap) shown = new TextDecoder('utf-8').decode(payload.subarray(0, cap), { stream: true });
    f.payload = shown;
    f.payloadEncoding = 'utf8';
  } else {
    f.payload = Buffer.from(payload.buffer, payload.byteOffset, Math.min(cap, payload.length)).toString('hex');
    f.payloadEncoding = 'hex';
  }
  if (payload.length > cap) f.payloadTruncated = true;
  return f;
}

const spanId = (span: number): string => '0x' + span.toString(16);

/**
 * The recorded events, in time order: instants, counters and payloads on their threads' tracks;
 * begin/end paired into complete slices per thread, async spans paired by id across threads
 * (slices.ts clips what losses cut); links as flows. Returns how many events. An event whose
 * time is not a finite number is drawn at its thread's last finite time with `args.fileTs`; a
 * counter cannot carry that (each of its args is a series), so an instant beside it does. A
 * value that is not a finite number is an instant with `args.value` in words.
 */
async function writeChromeEvents(reader: TraceReader, tracks: ChromeTracks, times: FiniteTimes, cap: number): Promise<number> {
  // A gap in a damaged file cut slices as a loss does.
  const gaps = reader.gaps.map((g) => ({ thread: g.thread, events: 1, firstTs: g.fromTs, lastTs: g.toTs }));
  const losses = new LossWindows(reader.threads.length, [...reader.drops(), ...gaps]);
  const slices = new SliceMatcher(
    losses,
    reader.threads.map((t) => t.registeredTs),
  );
  const spans = new AsyncMatcher(losses);
  let events = 0;
  for (const e of reader.eventsByTime()) {
    events++;
    const ts = times.at(e.thread, e.ts);
    const flag = fileTsFlag(ts, e.ts);
    slices.seen(e.thread, ts);
    spans.seen(ts);
    if (e.span !== undefined) await writeSpanEvent(tracks, spans, e, ts);
    else if (e.kind === 'bytes' && e.name === SPAN_ATTRS && annotateSpan(spans, e.payload)) continue;
    else if (e.kind === 'begin') for (const x of slices.begin(e.thread, e.id, e.name ?? `#${e.id}`, ts)) await writeSlice(tracks, x);
    else if (e.kind === 'end') {
      const closed = slices.end(e.thread, e.id, e.name ?? `#${e.id}`, ts);
      // The slice this end closes is the last: it carries the end's flag.
      for (const [i, x] of closed.entries()) await writeSlice(tracks, x, i === closed.length - 1 ? flag : undefined);
    } else if (!(await writeOtelEvent(reader, tracks, e, ts))) await writePointEvent(tracks, e, ts, flag, cap);
  }
  for (const x of slices.finish()) await writeSlice(tracks, x);
  for (const a of spans.finish()) await writeAsync(tracks, a);
  return events;
}

/** An OpenTelemetry span recorded by ringtrace/otel: an async span with its fields in args (its
 * resource: an instant with the attributes). False if the event is not an OTel record. */
async function writeOtelEvent(reader: TraceReader, tracks: ChromeTracks, e: TraceEvent, ts: number): Promise<boolean> {
  const d = decodeOtelEvent(e, reader);
  if (d === undefined) return false;
  const tid = tracks.tid(e.thread);
  if (d.span) for (const x of otelChromeEvents(d.span, reader, ts, PID, tid)) await tracks.emit(x);
  else {
    const args = { attributes: d.resource.attributes, schemaUrl: d.resource.schemaUrl ?? null };
    await tracks.emit({ name: 'otel.resource', cat: 'otel.resource', ph: 'i', s: 't', pid: PID, tid, ts: us(ts), args });
  }
  return true;
}

async function writePointEvent(
  tracks: ChromeTracks,
  e: TraceEvent,
  ts: number,
  flag: { fileTs: string } | undefined,
  cap: number,
): Promise<void> {
  const name = e.name ?? `#${e.id}`;
  const base = { name, pid: PID, tid: tracks.tid(e.thread), ts: us(ts) };
  if (e.kind === 'value' && Number.isFinite(e.value)) {
    await tracks.emit({ ...base, cat: CAT.value, ph: 'C', id: tracks.threads[e.thread].name, args: { [name]: e.value } });
    if (flag) await tracks.emit({ ...base, name: NON_FINITE_TIME, cat: CAT.event, ph: 'i', s: 't', args: { event: name, ...flag } });
    return;
  }
  let args: Record<string, unknown> | undefined = flag;
  if (e.kind === 'value') args = { value: String(e.value), ...flag };
  else if (e.kind === 'bytes') args = { ...payloadFields(e.payload ?? new Uint8Array(0), cap), ...flag };
  await tracks.emit({ ...base, cat: CAT.event, ph: 'i', s: 't', ...(args && { args }) });
}

/** A complete slice on its thread's track; a clipped one says which side and why. */
function writeSlice(tracks: ChromeTracks, x: SliceOut, flag?: { fileTs: string }): Promise<void> {
  const args = x.truncated === undefined && flag === undefined ? undefined : { truncated: x.truncated, clipped: x.clipped, ...flag };
  return tracks.emit({
    name: x.name,
    cat: CAT.slice,
    ph: 'X',
    pid: PID,
    tid: tracks.tid(x.thread),
    ...slice(x.from, x.to),
    ...(args && { args }),
  });
}

/** The event name of span attributes: a UTF-8 JSON object with the span's id (`"span": "0x…"`). */
export const SPAN_ATTRS = 'span.attrs';

/**
 * A `span.attrs` record (as `ringtrace/auto` writes before a span's end): its members other than
 * `span` go into the span's args. False (the record is then drawn as an instant, as any payload)
 * if it is not such an object or its span is not open.
 */
function annotateSpan(spans: AsyncMatcher, payload: Uint8Array | undefined): boolean {
  if (payload === undefined || payload[0] !== 0x7b) return false; // '{'
  let attrs: unknown;
  try {
    attrs = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8'));
  } catch {
    return false;
  }
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) return false;
  const { span, ...rest } = attrs as Record<string, unknown>;
  const id = typeof span === 'string' && /^0x[0-9a-f]+$/.test(span) ? Number(span) : NaN;
  return Number.isSafeInteger(id) && spans.annotate(id, rest);
}

/** Async begins wait in the matcher; ends complete them; links become flows from the span's begin. */
async function writeSpanEvent(tracks: ChromeTracks, spans: AsyncMatcher, e: TraceEvent, ts: number): Promise<void> {
  const span = e.span as number;
  if (e.kind === 'async-begin') {
    const done = spans.begin({ span, thread: e.thread, id: e.id, name: e.name ?? `#${e.id}`, ts, value: e.value });
    if (done) await writeAsync(tracks, done);
  } else if (e.kind === 'async-end') {
    const done = spans.end(span, e.thread, ts, e.id, e.name);
    if (done) await writeAsync(tracks, done);
  } else {
    const b = spans.get(span);
    const tid = tracks.tid(e.thread);
    await tracks.emit({
      name: 'link',
      cat: CAT.link,
      ph: 'i',
      s: 't',
      pid: PID,
      tid,
      ts: us(ts),
      args: { span: spanId(span), to: b?.name ?? null },
    });
    if (!b) return;
    const id = tracks.nextFlowId();
    await tracks.emit({ name: b.name, cat: CAT.link, ph: 's', id, pid: PID, tid: tracks.tid(b.thread), ts: us(b.ts) });
    await tracks.emit({ name: b.name, cat: CAT.link, ph: 'f', bp: 'e', id, pid: PID, tid, ts: us(ts) });
  }
}

/** An async span: a "b" and an "e" with its id (one Perfetto async track per name). */
async function writeAsync(tracks: ChromeTracks, a: AsyncOut): Promise<void> {
  const id = spanId(a.span);
  const common = { name: a.name, cat: CAT.async, id, pid: PID };
  const r = slice(a.begin.ts, a.end.ts);
  const args: Record<string, unknown> = { ...a.begin.attrs, span: id };
  if (a.begin.value !== undefined) args.value = Number.isFinite(a.begin.value) ? a.begin.value : String(a.begin.value);
  if (a.truncated !== undefined) Object.assign(args, { truncated: a.truncated, clipped: a.clipped });
  await tracks.emit({ ...common, ph: 'b', tid: tracks.tid(a.begin.thread), ts: r.ts, args });
  await tracks.emit({ ...common, ph: 'e', tid: tracks.tid(a.end.thread), ts: r.ts + r.dur, ...(a.truncated !== undefined && { args }) });
}

/**
 * Losses: an instant at each (on the thread's track), a cumulative "dropped events" counter
 * starting at 0, and a slice over the time from the first to the last lost event on the
 * thread's loss track (lanes "<thread> losses", "<thread> losses 2", ... if two overlap).
 */
async function writeChromeLosses(tracks: ChromeTracks, drops: TraceDrop[]): Promise<void> {
  const dropsOf = tracks.threads.map(() => [] as TraceDrop[]);
  for (const d of drops) dropsOf[d.thread]?.push(d);
  for (const t of tracks.threads) {
    await writeDropInstants(tracks, t, dropsOf[t.index]);
    await writeLossSlices(tracks, t, dropsOf[t.index]);
  }
}

async function writeDropInstants(tracks: ChromeTracks, t: TraceThread, drops: TraceDrop[]): Promise<void> {
  const tid = tracks.tid(t.index);
  const mine = drops.map((d) => ({ d, ts: dropTs(d, t) }));
  mine.sort((a, b) => a.ts - b.ts);
  const counter = (ts: number, dropped: number) =>
    tracks.emit({ name: 'dropped events', cat: CAT.loss, ph: 'C', pid: PID, tid, id: t.name, ts: us(ts), args: { dropped } });
  await counter(t.registeredTs, 0);
  let total = 0;
  for (const { d, ts } of mine) {
    total += d.events;
    const args = {
      reason: d.reason,
      events: d.events,
      bytes: d.bytes,
      firstTsUs: usOrNull(d.firstTs),
      lastTsUs: usOrNull(d.lastTs),
      ...(d.byPriority && { byPriority: d.byPriority }),
    };
    await tracks.emit({ name: 'ringtrace.drop', cat: CAT.loss, ph: 'i', s: 't', pid: PID, tid, ts: us(ts), args });
    await counter(ts, total);
  }
}

async function writeLossSlices(tracks: ChromeTracks, t: TraceThread, drops: TraceDrop[]): Promise<void> {
  const spans = drops.filter(
    (d) => Number.isFinite(d.firstTs) && Number.isFinite(d.lastTs) && Math.round(d.lastTs) > Math.round(d.firstTs),
  );
  spans.sort((a, b) => a.firstTs - b.firstTs);
  const lanes: Array<{ tid: number; end: number }> = [];
  for (const d of spans) {
    let lane = lanes.find((l) => l.end <= Math.round(d.firstTs));
    if (!lane) {
      lane = { tid: tracks.newTid(), end: -Infinity };
      lanes.push(lane);
      const suffix = LOSS_TRACK_SUFFIX + (lanes.length > 1 ? ` ${lanes.length}` : '');
      await tracks.name(lane.tid, t.name + suffix, t.index * SORT_STRIDE + 1 + lanes.length);
    }
    lane.end = Math.round(d.lastTs);
    const args = { reason: d.reason, events: d.events, bytes: d.bytes, firstTsUs: us(d.firstTs), lastTsUs: us(d.lastTs) };
    await tracks.emit({
      name: `ringtrace.drop: ${d.reason}`,
      cat: CAT.loss,
      ph: 'X',
      pid: PID,
      tid: lane.tid,
      ...slice(d.firstTs, d.lastTs),
      args,
    });
  }
}

/**
 * Backpressure: per thread, a slice for every span in a state, named by the state, on the
 * thread's "<thread> backpressure" track; a state counter (codes in metadata.backpressureStates);
 * and an instant on the thread's track at each change.
 */
async function writeChromeBackpressure(
  reader: TraceReader,
  tracks: ChromeTracks,
  states: TraceStateChange[],
  times: FiniteTimes,
): Promise<void> {
  // A change at a time that is not a finite number is drawn at the thread's last finite time.
  const drawn = states.map((c) => ({ ...c, ts: times.at(c.thread, c.ts) }));
  const spans = stateSpans(reader, drawn);
  for (const t of tracks.threads) {
    for (const s of spans[t.index]) {
      if (Math.round(s.to) <= Math.round(s.from)) continue; // nothing to draw; the instants show it
      const args = { state: s.state, code: STATE_CODE[s.state], from: s.entered, thread: t.name };
      await tracks.emit({
        name: s.state,
        cat: CAT.backpressure,
        ph: 'X',
        pid: PID,
        tid: tracks.stateTid[t.index],
        ...slice(s.from, s.to),
        cname: STATE_CNAME[s.state],
        args,
      });
    }
  }
  const counter = (t: TraceThread, ts: number, state: number) =>
    tracks.emit({
      name: 'backpressure state',
      cat: CAT.backpressure,
      ph: 'C',
      pid: PID,
      tid: tracks.tid(t.index),
      id: t.name,
      ts: us(ts),
      args: { state },
    });
  for (const t of tracks.threads) await counter(t, t.registeredTs, 0);
  for (const [k, s] of drawn.entries()) {
    const t = tracks.threads[s.thread];
    await counter(t, s.ts, STATE_CODE[s.to]);
    await tracks.emit({
      name: `state: ${s.from}->${s.to}`,
      cat: CAT.backpressure,
      ph: 'i',
      s: 't',
      pid: PID,
      tid: tracks.tid(t.index),
      ts: us(s.ts),
      args: { from: s.from, to: s.to, ...fileTsFlag(s.ts, states[k].ts) },
    });
  }
}

/** Damage: what a damaged file lost of a thread, as a slice over the time it covers. */
async function writeChromeGaps(reader: TraceReader, tracks: ChromeTracks): Promise<void> {
  for (const g of reader.gaps) {
    const from = Number.isFinite(g.fromTs) ? g.fromTs : Number.isFinite(g.toTs) ? g.toTs : tracks.threads[g.thread].registeredTs;
    const to = Number.isFinite(g.toTs) ? g.toTs : from;
    const args = { chunks: `${g.fromSeq}..${g.toSeq}`, fileOffset: g.offset };
    await tracks.emit({
      name: 'ringtrace.gap (damaged file)',
      cat: CAT.damage,
      ph: 'X',
      pid: PID,
      tid: tracks.tid(g.thread),
      ts: us(from),
      dur: us(to) - us(from),
      args,
    });
  }
}

function chromeMetadata(reader: TraceReader): Record<string, unknown> {
  const summary = reader.summary();
  return {
    source: 'ringtrace',
    trace: reader.path,
    formatVersion: reader.version,
    sessionStart: Number.isFinite(reader.sessionStartEpochMs) ? new Date(reader.sessionStartEpochMs).toISOString() : null,
    timeZero: 'ts 0 is when the tracer opened; every time here (ts, dur, and the firstTsUs/lastTsUs args of losses) is in microseconds',
    backpressureStates: STATE_CODES,
    tracks: {
      backpressure: `"<thread>${BACKPRESSURE_TRACK_SUFFIX}": one slice per span in a backpressure state, named by the state`,
      losses: `"<thread>${LOSS_TRACK_SUFFIX}": one slice per loss, from its first to its last lost event (more lanes if two overlap)`,
      counters: '"backpressure state" (codes in backpressureStates) and cumulative "dropped events", one per thread (id = thread name)',
    },
    complete: summary.complete,
    damage: summary.damage ?? null,
    damaged: summary.damaged,
    totals: summary.totals,
  };
}

// ---------------------------------------------------------------------------------------------
// JSON lines: a header, then events, drops and state changes in time order; one object a line.

function jsonlHeader(reader: TraceReader): Record<string, unknown> {
  const start = reader.sessionStartEpochMs;
  return {
    type: 'header',
    source: 'ringtrace',
    formatVersion: reader.version,
    sessionStartEpochMs: Number.isFinite(start) ? start : null,
    sessionStart: Number.isFinite(start) ? new Date(start).toISOString() : null,
    timeUnit: 'ns since sessionStart',
    complete: reader.complete,
    threads: reader.threads.map((t) => ({
      thread: t.index,
      name: t.name,
      registration: t.registration,
      slot: t.slot,
      nodeThreadId: t.nodeThreadId,
      policy: t.policy,
      registeredTs: t.registeredTs,
      endReason: t.endReason ?? null,
    })),
  };
}

/** Drops and state changes as lines, sorted by the time they are placed at (a drop: its last
 * lost event, else its thread's last time; `ts` says which). */
function jsonlTimedLines(reader: TraceReader, drops: TraceDrop[], states: TraceStateChange[]): Array<{ ts: number; line: string }> {
  const threadName = (i: number) => reader.threads[i]?.name ?? null;
  const lines = [
    ...drops.map((d) => {
      const ts = dropTs(d, reader.threads[d.thread]);
      return { ts, line: JSON.stringify({ type: 'drop', ts, threadName: threadName(d.thread), ...d }) };
    }),
    ...states.map((c) => ({ ts: c.ts, line: JSON.stringify({ type: 'state', threadName: threadName(c.thread), ...c }) })),
  ];
  return lines.sort((a, b) => a.ts - b.ts);
}

function jsonlEvent(reader: TraceReader, e: TraceEvent, cap: number): string {
  const line: Record<string, unknown> = {
    type: 'event',
    thread: e.thread,
    threadName: reader.threads[e.thread]?.name ?? null,
    ts: e.ts,
    id: e.id,
    name: e.name ?? null,
    kind: e.kind,
  };
  if (e.value !== undefined) line.value = e.value;
  if (e.span !== undefined) line.span = spanId(e.span);
  if (e.kind === 'bytes') {
    const otel = decodeOtelEvent(e, reader);
    if (otel) line.otel = otelJsonlField(otel, reader, e.ts);
    else {
      const { bytes, ...rest } = payloadFields(e.payload ?? new Uint8Array(0), cap);
      Object.assign(line, { payloadBytes: bytes, ...rest });
    }
  }
  return JSON.stringify(line);
}

async function writeJsonl(reader: TraceReader, o: BatchedOutput, cap: number): Promise<ExportCounts> {
  await o.push(JSON.stringify(jsonlHeader(reader)) + '\n');
  const drops = reader.drops();
  const states = reader.states();
  const timed = jsonlTimedLines(reader, drops, states);
  let next = 0;
  let events = 0;
  for (const e of reader.eventsByTime()) {
    events++;
    while (next < timed.length && timed[next].ts <= e.ts) await o.push(timed[next++].line + '\n');
    await o.push(jsonlEvent(reader, e, cap) + '\n');
  }
  while (next < timed.length) await o.push(timed[next++].line + '\n');
  const threadName = (i: number) => reader.threads[i]?.name ?? null;
  for (const g of reader.gaps) await o.push(JSON.stringify({ type: 'gap', threadName: threadName(g.thread), ...g }) + '\n');
  for (const d of reader.damaged) await o.push(JSON.stringify({ type: 'damage', ...d }) + '\n');
  return { events, drops: drops.length, states: states.length };
}
