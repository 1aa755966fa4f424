/**
 * Worker for the close-then-register test: `cycles` times registers a writer, records `events`
 * sequence values and closes it, as a thread that opens a writer per task does. Reports how
 * many registrations failed and the first failure's message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../../src/index.js';

export interface CycleWorkerData {
  trace: TracerHandle;
  name: string;
  cycles: number;
  events: number;
}

export interface CycleResult {
  registered: number;
  failed: number;
  firstError?: string;
}

/** The loop itself, also run on the main thread by the test. */
export function cycle(tracer: Tracer, name: string, cycles: number, events: number): CycleResult {
  const id = tracer.define('seq');
  const out: CycleResult = { registered: 0, failed: 0 };
  for (let i = 0; i < cycles; i++) {
    let w;
    try {
      w = tracer.register(name);
    } catch (err) {
      out.failed++;
      out.firstError ??= `${(err as Error).name}: ${(err as Error).message}`;
      continue;
    }
    out.registered++;
    for (let seq = 0; seq < events; seq++) w.record(id, seq);
    w.close();
  }
  return out;
}

if (parentPort && workerData?.trace) {
  const d = workerData as CycleWorkerData;
  parentPort.postMessage(cycle(Tracer.attach(d.trace), d.name, d.cycles, d.events));
}
