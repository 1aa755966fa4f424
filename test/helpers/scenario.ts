/** Shared pieces of the integration tests (main-thread side and worker side). */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { openTrace, type TraceReader, type Writer } from '../../src/index.js';
import type { ScenarioData } from './scenario-worker.js';

export const tempTrace = (label: string): string => join(mkdtempSync(join(tmpdir(), `rt-${label}-`)), 'trace.rtrace');

/** Deterministic payload for sequence number `seq`, so the reader can check the bytes. */
export function payloadFor(seq: number, len: number): Uint8Array {
  const p = new Uint8Array(len);
  for (let i = 0; i < len; i++) p[i] = (seq + i * 7) & 255;
  return p;
}

/** The priority-flood mix: 1 % critical, 20 % debug, 79 % normal, interleaved. */
export const priorityOfSeq = (seq: number): 'critical' | 'normal' | 'debug' => {
  const k = seq % 100;
  return k === 0 ? 'critical' : k % 5 === 1 ? 'debug' : 'normal';
};

const nap = new Int32Array(new SharedArrayBuffer(4));
/** Test pacing, not a library feature: wait (bounded) until the writer has a spare ring, so a
 * test that wants "nothing dropped" does not outrun the drain. */
export function paceUntilSpare(w: Writer): void {
  for (let i = 0; w.spareRings() === 0; i++) {
    if (i > 20000) throw new Error('drain did not return a ring within 20 s');
    Atomics.wait(nap, 0, 0, 1);
  }
}

/** The main thread's share of an exact scenario: values 0..n-1, every `bytesEvery`th event
 * (those with seq % bytesEvery === bytesAt) a payloadFor(seq, seq % (maxPayload + 1)) instead,
 * paced so that nothing is dropped. */
export function recordExact(
  w: Writer,
  ids: { seq: number; blob: number },
  n: number,
  bytesEvery: number,
  bytesAt: number,
  maxPayload: number,
): void {
  for (let seq = 0; seq < n; seq++) {
    if ((seq & 127) === 0) paceUntilSpare(w);
    if (seq % bytesEvery === bytesAt) w.recordBytes(ids.blob, payloadFor(seq, seq % (maxPayload + 1)));
    else w.record(ids.seq, seq);
  }
}

/** What a scenario worker reports when its recording is over. */
export interface ScenarioDone {
  /** Events record*() returned true for. */
  kept: number;
  /** record*() calls the worker made (its attempted count must equal this). */
  calls: number;
  metrics: unknown;
}

export interface WorkerRun {
  worker: Worker;
  registered: Promise<{ slot: number; registration: number }>;
  done: Promise<ScenarioDone>;
  exited: Promise<number>;
  messages: unknown[];
}

export function startScenario(data: ScenarioData): WorkerRun {
  const worker = new Worker(new URL('./scenario-worker.js', import.meta.url), { workerData: data });
  const messages: unknown[] = [];
  let onRegistered!: (v: { slot: number; registration: number }) => void;
  let onDone!: (v: ScenarioDone) => void;
  let onError!: (e: Error) => void;
  const registered = new Promise<{ slot: number; registration: number }>((res) => (onRegistered = res));
  const done = new Promise<ScenarioDone>((res, rej) => {
    onDone = res;
    onError = rej;
  });
  done.catch(() => {});
  worker.on('message', (m: { type: string; name?: string; message?: string }) => {
    messages.push(m);
    if (m.type === 'registered') onRegistered(m as never);
    else if (m.type === 'done') onDone(m as never);
    else if (m.type === 'error') onError(Object.assign(new Error(m.message), { name: m.name }));
  });
  const exited = new Promise<number>((res) => worker.on('exit', res));
  worker.on('error', (e) => onError(e));
  return { worker, registered, done, exited, messages };
}

export interface ThreadCheck {
  events: number;
  /** Values (sequence numbers) seen, in file order. */
  values: number[];
  payloadErrors: number;
}

/** Reads every event back, per thread, checking byte payloads against payloadFor(). */
export function readBack(r: TraceReader): Map<string, ThreadCheck> {
  const out = new Map<string, ThreadCheck>();
  const lastSeq = new Map<number, number>();
  for (const t of r.threads) out.set(t.name, { events: 0, values: [], payloadErrors: 0 });
  for (const e of r.events()) {
    const c = out.get(r.threads[e.thread].name)!;
    c.events++;
    if (e.kind === 'value') {
      c.values.push(e.value!);
      lastSeq.set(e.thread, e.value!);
    } else if (e.kind === 'bytes') {
      // A bytes event carries no value: its sequence number is one past the previous event's.
      const seq = (lastSeq.get(e.thread) ?? -1) + 1;
      lastSeq.set(e.thread, seq);
      c.values.push(seq);
      const want = payloadFor(seq, e.payload!.length);
      if (!Buffer.from(want).equals(Buffer.from(e.payload!))) c.payloadErrors++;
    }
  }
  return out;
}

/** The values (sequence numbers 0..total-1) of a trace's value events, sorted, and the longest
 * run of sequence numbers missing from them. */
export function keptSequence(r: TraceReader, total: number): { kept: number[]; longestLostRun: number } {
  const kept: number[] = [];
  for (const e of r.events()) if (e.value !== undefined) kept.push(e.value);
  kept.sort((a, b) => a - b);
  let longestLostRun = 0;
  let prev = -1;
  for (const s of [...kept, total]) {
    longestLostRun = Math.max(longestLostRun, s - prev - 1);
    prev = s;
  }
  return { kept, longestLostRun };
}

export { openTrace };
