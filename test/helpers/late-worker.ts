/**
 * A worker that gets its tracer handle by message (it was started before the tracer opened, as
 * in a worker pool), records `events` sequence values, reports, then ends as told: `exit`
 * (process.exit), `return` (falls off the end), `throw` (uncaught), or `hang` (spins until it is
 * terminated).
 */
import { parentPort } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../../src/index.js';

export interface LateWorkerJob {
  trace: TracerHandle;
  events: number;
  end: 'exit' | 'return' | 'throw' | 'hang';
}

parentPort!.once('message', (job: LateWorkerJob) => {
  const tracer = Tracer.attach(job.trace);
  const w = tracer.register('late');
  const id = tracer.define('seq');
  for (let seq = 0; seq < job.events; seq++) w.record(id, seq);
  parentPort!.postMessage({ recorded: job.events });
  if (job.end === 'exit') process.exit(0);
  if (job.end === 'throw') throw new Error('late worker fails on purpose');
  if (job.end === 'hang') for (;;);
  parentPort!.close(); // 'return': nothing keeps the worker alive
});
