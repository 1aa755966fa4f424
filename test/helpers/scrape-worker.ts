/**
 * Worker side of the scraping tests: plays a schedule of bursts, blocking pauses and flushes
 * (every event's value or payload is its sequence number), then records a few more events and
 * blocks in Atomics.wait, as a pooled worker waiting for its next task does: its event loop never
 * turns, so only the drain can take what it committed last.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../../src/index.js';

export type ScrapeStep = { burst: number; bytesEvery: number } | { pauseMs: number } | { flush: true };

export interface ScrapeWorkerData {
  trace: TracerHandle;
  name: string;
  policy: 'drop-oldest' | 'drop-newest';
  steps: ScrapeStep[];
  /** Events recorded after the schedule, once a spare ring is back and the ring was handed over. */
  tail: number;
  /** [0]: set to 1 to release the blocked worker; [1]: 1 = close the writer before returning. */
  control: SharedArrayBuffer;
}

const d = workerData as ScrapeWorkerData;
const tracer = Tracer.attach(d.trace);
const seqId = tracer.define('seq');
const blobId = tracer.define('blob');
const w = tracer.register(d.name, { policy: d.policy });
const control = new Int32Array(d.control);
const nap = new Int32Array(new SharedArrayBuffer(4));
let seq = 0;
let refused = 0;

function one(bytesEvery: number): void {
  let kept: boolean;
  if (bytesEvery > 0 && seq % bytesEvery === 0) {
    const payload = new Uint8Array(4 + (seq % 61));
    new DataView(payload.buffer).setUint32(0, seq, true);
    kept = w.recordBytes(blobId, payload);
  } else kept = w.record(seqId, seq);
  if (!kept) refused++;
  seq++;
}

for (const step of d.steps) {
  if ('burst' in step) for (let i = 0; i < step.burst; i++) one(step.bytesEvery);
  else if ('pauseMs' in step) Atomics.wait(nap, 0, 0, step.pauseMs);
  else w.flush();
}
// End in a ring the drain can read: wait (blocking) for a spare, hand the ring over, then record.
while (w.spareRings() === 0) Atomics.wait(nap, 0, 0, 1);
while (!w.flush()) Atomics.wait(nap, 0, 0, 1);
for (let i = 0; i < d.tail; i++) one(0);
parentPort!.postMessage({ type: 'done', calls: seq, refused });
while (Atomics.load(control, 0) === 0) Atomics.wait(control, 0, 0);
if (Atomics.load(control, 1) === 1) w.close();
