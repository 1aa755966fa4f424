/** A piscina task module: each worker of the pool registers its writer once, at load. */
import { workerData } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../../src/index.js';

const tracer = Tracer.attach((workerData as { trace: TracerHandle }).trace);
const w = tracer.register();
const task = tracer.define('task');
const step = tracer.define('task.step');

/** 10 events per task: a slice around 8 numeric samples. */
export default function handle(n: number): number {
  w.begin(task);
  for (let i = 0; i < 8; i++) w.record(step, n * 8 + i);
  w.end(task);
  return n;
}
