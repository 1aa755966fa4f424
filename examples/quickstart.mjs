// The README's example. Run it from the repository after `npm run build`: node examples/quickstart.mjs [trace-path]
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { Tracer, openTrace } from 'ringtrace';

if (isMainThread) {
  const path = process.argv[2] ?? './app.rtrace';
  const tracer = await Tracer.open({ path });                          // starts the drain worker
  const worker = new Worker(new URL(import.meta.url), { workerData: { trace: tracer.handle } });
  const w = tracer.register('main');                                   // this thread's writer
  const tick = tracer.define('tick');                                  // interned name -> id
  let waits = 0;
  for (let i = 0; i < 100_000; i++) {
    // A loop this tight can outrun the drain (while the drain thread is descheduled, no ring comes
    // back): wait for a spare ring rather than drop. Without this, the policy drops and counts.
    while (w.spareRings() === 0) {
      waits++;
      await sleep(1);
    }
    w.record(tick, i);                                                 // false only if not kept
  }
  await new Promise((resolve) => worker.once('exit', resolve));
  const summary = await tracer.close();                                // final drain, file finalized
  console.log(summary.events, 'events,', summary.dropped, 'dropped, balanced:', summary.balanced, '| waited for a ring', waits, 'times');

  const trace = openTrace(path);
  let n = 0;
  for (const e of trace.events()) n++;                                 // { thread, ts (ns), id, name, kind, value?, payload? }
  console.log(n, 'events read back;', trace.summary().totals.dropped, 'dropped;', trace.drops().length, 'loss records');
} else {
  const tracer = Tracer.attach(workerData.trace);
  const w = tracer.register('worker-1', { policy: 'drop-newest' });
  const req = tracer.define('http.request');
  w.begin(req);
  w.recordBytes(req, new TextEncoder().encode('GET /'));
  w.end(req);
  w.close();                                                          // optional: exit is salvaged too
}
