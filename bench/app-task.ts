/**
 * The app benchmark's pool task (bench/app-server.ts): each piscina worker attaches to the tracer
 * (when tracing is on) and registers its writer once, at load. Per task: a slice around 6 numeric
 * samples = 8 events (the main thread adds the request's begin/end: 10 per request).
 */
import { workerData } from 'node:worker_threads';
import { Tracer, type TracerHandle, type Writer } from '../src/index.js';

const handle = (workerData as { trace?: TracerHandle }).trace;
let w: Writer | undefined;
let task = 0;
let step = 0;
if (handle) {
  const tracer = Tracer.attach(handle);
  w = tracer.register();
  task = tracer.define('task');
  step = tracer.define('task.step');
}

/** Some work, the same with tracing on or off: a small checksum of the request number. */
export default function handle_(n: number): number {
  w?.begin(task);
  let h = n | 0;
  for (let i = 0; i < 6; i++) {
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) + i;
    w?.record(step, h);
  }
  w?.end(task);
  return h >>> 0;
}
