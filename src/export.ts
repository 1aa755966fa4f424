/**
 * `ringtrace export`: a trace as Chrome trace event JSON (Perfetto UI, chrome://tracing) or as
 * JSON lines. Output is streamed: events come from the reader's generator chunk by chunk and go
 * out in ~64 KiB writes that wait for 'drain', so a trace larger than memory exports fine.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { STATE_NAMES } from './backpressure.js';
import type { TraceDrop, TraceReader, TraceThread } from './reader.js';

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

export async function exportTrace(reader: TraceReader, format: ExportFormat, out: Writable): Promise<ExportCounts> {
  const o = new BatchedOutput(out);
  const counts = format === 'chrome' ? await writeChrome(reader, o) : await writeJsonl(reader, o);
  await o.flush();
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Chrome trace event format

const PID = 1;
const us = (ns: number): number => ns / 1000;
const STATE_CODE: Record<string, number> = Object.fromEntries(STATE_NAMES.map((n, i) => [n, i]));

/** Where on the timeline a loss goes: its last time, else its first, else the thread's last event. */
function dropTs(d: TraceDrop, t: TraceThread): number {
  for (const ts of [d.lastTs, d.firstTs, t.lastTs, t.registeredTs]) if (Number.isFinite(ts)) return ts;
  return 0;
}

/*
 * Counters ("C") are process-scoped in the Chrome format: two threads' "dropped events" would
 * share one track. The format combines a counter's `name` with its `id`, so every counter here
 * carries the thread's name as `id` to get one track per thread while keeping the names stable.
 */
async function writeChrome(reader: TraceReader, o: BatchedOutput): Promise<ExportCounts> {
  const threads = reader.threads;
  const tid = (thread: number) => thread + 1;
  const emit = (e: object, first = false) => o.push((first ? '\n' : ',\n') + JSON.stringify(e));

  await o.push('{"traceEvents":[');
  await emit({ name: 'process_name', ph: 'M', pid: PID, tid: 0, args: { name: `ringtrace ${reader.path}` } }, true);
  for (const t of threads) {
    await emit({ name: 'thread_name', ph: 'M', pid: PID, tid: tid(t.index), args: { name: t.name } });
    await emit({ name: 'thread_sort_index', ph: 'M', pid: PID, tid: tid(t.index), args: { sort_index: t.index } });
  }

  let events = 0;
  for (const e of reader.events()) {
    events++;
    const name = e.name ?? `#${e.id}`;
    const base = { name, pid: PID, tid: tid(e.thread), ts: us(e.ts) };
    switch (e.kind) {
      case 'instant':
        await emit({ ...base, ph: 'i', s: 't' });
        break;
      case 'value':
        await emit({ ...base, ph: 'C', id: threads[e.thread].name, args: { [name]: e.value } });
        break;
      case 'bytes':
        await emit({ ...base, ph: 'i', s: 't', args: { bytes: e.payload?.length ?? 0 } });
        break;
      case 'begin':
        await emit({ ...base, ph: 'B' });
        break;
      case 'end':
        await emit({ ...base, ph: 'E' });
        break;
    }
  }

  // Losses: an instant at each, and a cumulative "dropped events" counter starting at 0.
  const drops = reader.drops();
  for (const t of threads) {
    const mine = drops.filter((d) => d.thread === t.index).map((d) => ({ d, ts: dropTs(d, t) }));
    mine.sort((a, b) => a.ts - b.ts);
    const counter = (ts: number, dropped: number) =>
      emit({ name: 'dropped events', ph: 'C', pid: PID, tid: tid(t.index), id: t.name, ts: us(ts), args: { dropped } });
    await counter(t.registeredTs, 0);
    let total = 0;
    for (const { d, ts } of mine) {
      total += d.events;
      await emit({
        name: 'ringtrace.drop',
        ph: 'i',
        s: 't',
        pid: PID,
        tid: tid(t.index),
        ts: us(ts),
        args: { reason: d.reason, events: d.events, bytes: d.bytes, firstTs: d.firstTs, lastTs: d.lastTs },
      });
      await counter(ts, total);
    }
  }

  // Backpressure: a state counter per thread (0 normal .. 3 recovery) and an instant per change.
  const states = reader.states();
  for (const t of threads) {
    const counter = (ts: number, state: number) =>
      emit({ name: 'backpressure state', ph: 'C', pid: PID, tid: tid(t.index), id: t.name, ts: us(ts), args: { state } });
    await counter(t.registeredTs, 0);
    for (const s of states) {
      if (s.thread !== t.index) continue;
      await counter(s.ts, STATE_CODE[s.to]);
      await emit({ name: `state: ${s.from}->${s.to}`, ph: 'i', s: 't', pid: PID, tid: tid(t.index), ts: us(s.ts), args: { from: s.from, to: s.to } });
    }
  }

  // Damage: what a damaged file lost of a thread, as a slice over the time it covers.
  for (const g of reader.gaps) {
    const from = Number.isFinite(g.fromTs) ? g.fromTs : Number.isFinite(g.toTs) ? g.toTs : threads[g.thread].registeredTs;
    const to = Number.isFinite(g.toTs) ? g.toTs : from;
    const args = { chunks: `${g.fromSeq}..${g.toSeq}`, fileOffset: g.offset };
    await emit({ name: 'ringtrace.gap (damaged file)', ph: 'X', pid: PID, tid: tid(g.thread), ts: us(from), dur: us(to) - us(from), args });
  }

  const summary = reader.summary();
  const metadata = {
    source: 'ringtrace',
    trace: reader.path,
    formatVersion: reader.version,
    sessionStart: Number.isFinite(reader.sessionStartEpochMs) ? new Date(reader.sessionStartEpochMs).toISOString() : null,
    timeZero: 'ts 0 is when the tracer opened; ringtrace.drop firstTs/lastTs args are ns on the same clock',
    complete: summary.complete,
    damage: summary.damage ?? null,
    damaged: summary.damaged,
    totals: summary.totals,
  };
  await o.push(`\n],\n"displayTimeUnit":"ns",\n"metadata":${JSON.stringify(metadata)}}\n`);
  return { events, drops: drops.length, states: states.length };
}

// ---------------------------------------------------------------------------------------------
// JSON lines: events, then drops, then state changes; one object a line.

async function writeJsonl(reader: TraceReader, o: BatchedOutput): Promise<ExportCounts> {
  const threadName = (i: number) => reader.threads[i]?.name ?? null;
  let events = 0;
  for (const e of reader.events()) {
    events++;
    const line: Record<string, unknown> = { type: 'event', thread: e.thread, threadName: threadName(e.thread), ts: e.ts, id: e.id, name: e.name ?? null, kind: e.kind };
    if (e.kind === 'value') line.value = e.value;
    if (e.kind === 'bytes') line.payloadBytes = e.payload?.length ?? 0;
    await o.push(JSON.stringify(line) + '\n');
  }
  const drops = reader.drops();
  for (const d of drops) await o.push(JSON.stringify({ type: 'drop', threadName: threadName(d.thread), ...d }) + '\n');
  const states = reader.states();
  for (const s of states) await o.push(JSON.stringify({ type: 'state', threadName: threadName(s.thread), ...s }) + '\n');
  for (const g of reader.gaps) await o.push(JSON.stringify({ type: 'gap', threadName: threadName(g.thread), ...g }) + '\n');
  for (const d of reader.damaged) await o.push(JSON.stringify({ type: 'damage', ...d }) + '\n');
  return { events, drops: drops.length, states: states.length };
}
