/**
 * Worker side of the scalability benchmarks (bench/scale.ts). Attaches to the tracer, registers,
 * says ready, waits for the common start signal, then records for `durationMs`:
 *  - flat:   record(id) as fast as it can;
 *  - paced:  record(id), and every 64 events waits (sleeping, 50 us at a time) while the pool has
 *            no spare ring, so it never runs into an exhausted pool;
 *  - quiet:  10 events, then sleeps 1 ms (about 10k events/s).
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../src/index.js';

export interface BenchWorkerData {
  handle: TracerHandle;
  mode: 'flat' | 'paced' | 'quiet';
  durationMs: number;
  go: SharedArrayBuffer;
  name: string;
}

export interface BenchWorkerDone {
  type: 'done';
  name: string;
  mode: string;
  events: number;
  elapsedMs: number;
  waits: number;
}

const d = workerData as BenchWorkerData;
const tracer = Tracer.attach(d.handle);
const w = tracer.register(d.name);
const id = tracer.define('ev');
const go = new Int32Array(d.go);
const nap = new Int32Array(new SharedArrayBuffer(4));
parentPort!.postMessage({ type: 'ready' });
Atomics.wait(go, 0, 0);

const t0 = performance.now();
const end = t0 + d.durationMs;
let n = 0;
let waits = 0;
if (d.mode === 'flat') {
  do {
    for (let i = 0; i < 256; i++) w.record(id);
    n += 256;
  } while (performance.now() < end);
} else if (d.mode === 'paced') {
  do {
    for (let i = 0; i < 64; i++) w.record(id);
    n += 64;
    while (w.spareRings() === 0) {
      waits++;
      Atomics.wait(nap, 0, 0, 0.05);
    }
  } while (performance.now() < end);
} else {
  do {
    for (let i = 0; i < 10; i++) w.record(id);
    n += 10;
    Atomics.wait(nap, 0, 0, 1);
  } while (performance.now() < end);
}
const elapsedMs = performance.now() - t0;
w.close();
const done: BenchWorkerDone = { type: 'done', name: d.name, mode: d.mode, events: n, elapsedMs, waits };
parentPort!.postMessage(done);
await tracer.close();
