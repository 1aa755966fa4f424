// Writes a small trace with every record kind (names, two threads, instants, values, byte
// payloads, slices, async spans and links (version 3 on), names with priorities (version 4 on), a
// drop-newest exhaustion with its drops and state changes, sampled out in part (version 5 on))
// using the build
// in <dist>, for test/fixtures/golden-v<N>.rtrace. The reader's view of it is pinned in the
// matching .json by test/golden.test.ts: a layout change that forgets to bump FORMAT_VERSION, or
// a reader that stops reading an older version, fails there.
//   node scripts/make-golden.mjs dist test/fixtures/golden-v2.rtrace
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [distArg, outArg] = isMainThread ? process.argv.slice(2) : [workerData.dist, undefined];
const { Tracer, REASONS } = await import(pathToFileURL(resolve(distArg, 'src/index.js')).href);
// Version 5: pressure sampling, so that main's flood (below) is sampled as well as dropped.
const sampling = REASONS?.includes('sampled') ? { sampling: true } : {};

if (isMainThread) {
  if (!outArg) throw new Error('usage: make-golden.mjs <dist> <out.rtrace>');
  const tracer = await Tracer.open({
    path: outArg, // as given: the config in the file records it (no absolute path of this machine)
    ringSize: 4096,
    ringsPerThread: 4,
    maxThreads: 4,
    policy: 'drop-newest',
    flushIntervalMs: 0,
    exitHooks: false,
    ...sampling,
  });
  const main = tracer.register('main');
  const tick = tracer.define('tick');
  const depth = tracer.define('queue.depth');
  const blob = tracer.define('blob');
  const span = tracer.define('request');
  for (let i = 0; i < 20; i++) {
    main.begin(span);
    main.record(tick);
    main.record(depth, i * 1.5);
    main.recordBytes(
      blob,
      Uint8Array.from({ length: i % 11 }, (_, k) => (i * 7 + k) & 255),
    );
    main.end(span);
  }
  // Version 3: an async span begun here and linked and ended in the worker.
  const shared = main.beginAsync ? main.beginAsync(tracer.define('job'), 42) : undefined;
  main.flush();
  const w = new Worker(new URL(import.meta.url), { workerData: { dist: resolve(distArg), trace: tracer.handle, shared } });
  await new Promise((ok, fail) => {
    w.once('exit', ok);
    w.once('error', fail);
  });
  await tracer.pauseDrain();
  // Exhaust main's pool: 4 rings of 4 KiB hold ~680 instants; the rest are dropped and counted.
  // Version 5: sampled at 1 in 64 under pressure, the pool lasts ~60 times as long: flood more.
  const flood = sampling.sampling ? 40000 : 3000;
  for (let i = 0; i < flood; i++) main.record(tick);
  tracer.resumeDrain();
  // Version 4: a critical name (defined after the flood, so that the reserve does not change it).
  tracer.define('shutdown', { priority: 'critical' });
  const summary = await tracer.close();
  console.log(JSON.stringify({ events: summary.events, dropped: summary.dropped }));
} else {
  const tracer = Tracer.attach(workerData.trace);
  const w = tracer.register('worker-1');
  const id = tracer.define('worker.step');
  for (let i = 0; i < 50; i++) w.record(id, i);
  if (tracer.define.length === 2) {
    // Version 4: debug events, kept (the worker is NORMAL).
    const dbg = tracer.define('worker.debug', { priority: 'debug' });
    for (let i = 0; i < 3; i++) w.record(dbg);
  }
  if (workerData.shared !== undefined) {
    w.link(workerData.shared);
    const own = w.beginAsync(tracer.define('worker.task'));
    w.endAsync(own);
    w.endAsync(workerData.shared);
  }
  w.close();
}
