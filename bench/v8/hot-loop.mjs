// V8 evidence for the hot path (docs/benchmarks.md): run with --trace-turbo-inlining or --trace-deopt.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tracer } from '../../dist/src/index.js';
const t = await Tracer.open({
  path: join(tmpdir(), 'ringtrace-v8.rtrace'),
  ringSize: '1MiB',
  ringsPerThread: 16,
  logLevel: 'error',
  exitHooks: false,
});
const w = t.register('main');
const id = t.define('x');
function hot(n) {
  for (let i = 0; i < n; i++) w.record(id, i);
}
function hotAt(n, ts) {
  for (let i = 0; i < n; i++) w.recordAt(ts + i, id, i);
}
for (let round = 0; round < 200; round++) {
  hot(2000);
  hotAt(2000, round * 1e7);
  while (w.spareRings() < 14) {
    w.flush();
    await new Promise((r) => setTimeout(r, 1));
  }
}
console.log('dropped', t.metrics().totals.eventsDropped);
await t.close();
