/**
 * A request handler thread for test/viewer.test.ts: links each request's async span, does its
 * work in a `handler` slice and ends the span here. `flood` records until the pool is exhausted
 * (the drain is paused), so the next requests' events are dropped.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Tracer } from '../../src/index.js';
import type { DropPolicy } from '../../src/config.js';

const { trace, name, policy } = workerData as { trace: Parameters<typeof Tracer.attach>[0]; name: string; policy: DropPolicy };
const tracer = Tracer.attach(trace);
const w = tracer.register(name, { policy });
const handler = tracer.define('handler');
const fill = tracer.define('fill');
const port = parentPort!;

port.on('message', (m: { type: string; requests?: Array<{ span: number; i: number }> }) => {
  if (m.type === 'flood') {
    // Until a record is refused: every spare ring is taken and drop-newest drops.
    for (let k = 0; k < 1_000_000 && w.record(fill, k); k++);
    port.postMessage({ type: 'flooded' });
  } else if (m.type === 'handle') {
    const done: Array<{ i: number; end: number }> = [];
    for (const { span, i } of m.requests ?? []) {
      w.link(span);
      w.begin(handler);
      const until = performance.now() + 0.5 + (i % 5) * 0.2;
      while (performance.now() < until);
      w.end(handler);
      w.endAsync(span);
      done.push({ i, end: tracer.now() });
    }
    port.postMessage({ type: 'handled', done });
  } else if (m.type === 'exit') {
    w.close();
    port.close();
  }
});
port.postMessage({ type: 'ready' });
