// The DROPPING state timed in a plain loop (no harness), both policies in one process, for
// comparison with the mitata bursts of section 3 (docs/benchmarks.md). After `npm run build`:
//   node bench/v8/dropping-loop.mjs
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Tracer } from '../../dist/src/index.js';

const open = async (policy) => {
  const tracer = await Tracer.open({
    path: join(tmpdir(), `ringtrace-loop-${policy}.rtrace`),
    ringSize: '4KiB',
    ringsPerThread: 4,
    maxThreads: 2,
    flushIntervalMs: 0,
    exitHooks: false,
    logLevel: 'error',
  });
  await tracer.pauseDrain();
  const w = tracer.register('main', { policy });
  const id = tracer.define('e');
  for (let i = 0; i < 5000; i++) w.record(id); // exhausts the 4 x 4 KiB pool
  return { tracer, w, id };
};
const writers = { 'drop-newest': await open('drop-newest'), 'drop-oldest': await open('drop-oldest') };
const N = 1_000_000;
const times = {};
for (let round = 0; round < 9; round++) {
  for (const [policy, { w, id }] of Object.entries(writers)) {
    let t0 = performance.now();
    for (let i = 0; i < N; i++) w.record(id);
    (times[`${policy} record(id)`] ??= []).push(((performance.now() - t0) * 1e6) / N);
    const ts = w.now();
    t0 = performance.now();
    for (let i = 0; i < N; i++) w.recordAt(ts + i, id);
    (times[`${policy} recordAt(ts, id)`] ??= []).push(((performance.now() - t0) * 1e6) / N);
  }
}
for (const [name, t] of Object.entries(times))
  console.log(name.padEnd(32), t.sort((a, b) => a - b)[t.length >> 1].toFixed(1), 'ns/event (median of 9 x 1 M)');
for (const { tracer } of Object.values(writers)) {
  if (tracer.metrics().threads[0].state !== 'dropping') throw new Error('expected DROPPING throughout');
  await tracer.close();
}
