/**
 * Worker for the metrics tests: registers, records `events` values, closes its writer, then (if
 * `watchAfterClose`) reads tracer.metrics() `samples` times while the drain retires its slot and
 * reports the distinct (threads, attempted) totals it saw. A worker never receives the drain's summary messages, so
 * what it sees comes from shared memory alone.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../../src/index.js';

export interface MetricsWorkerData {
  trace: TracerHandle;
  name: string;
  events: number;
  watchAfterClose?: { samples: number };
}

const d = workerData as MetricsWorkerData;
const tracer = Tracer.attach(d.trace);
const w = tracer.register(d.name);
const id = tracer.define('seq');
for (let seq = 0; seq < d.events; seq++) w.record(id, seq);
w.close();
const seen = new Set<string>();
let retiredSeen = false;
if (d.watchAfterClose) {
  // Until the drain has retired this registration (its slot freed, its numbers in the ledger),
  // and then a little longer; bounded.
  const until = performance.now() + 10_000;
  for (let i = 0, after = 0; after < d.watchAfterClose.samples && performance.now() < until; i++) {
    const m = tracer.metrics();
    seen.add(`${m.totals.threads}/${m.totals.eventsAttempted}`);
    if (m.retiredTotals.threads > 0) {
      retiredSeen = true;
      after++;
    }
    if (i % 1000 === 999) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // let the drain run
  }
}
parentPort!.postMessage({ attempted: d.events, seen: [...seen], retiredSeen });
