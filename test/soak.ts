/**
 * Soak: many workers with random rates, sizes and policies, the drain paused, throttled and
 * resumed at random, for a while; then the invariant for every thread: attempted = events in the
 * file + dropped, and the sequence numbers missing from the file are exactly the dropped ones.
 *
 *   npm run soak                      # 16 workers, 60 s
 *   node dist/test/soak.js 10 8       # seconds, workers
 */
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Tracer, openTrace } from '../src/index.js';
import { tempTrace } from './helpers/scenario.js';

export interface SoakResult {
  path: string;
  threads: number;
  events: number;
  dropped: number;
  problems: string[];
}

export async function runSoak(seconds: number, workers: number, seed = 42): Promise<SoakResult> {
  const path = tempTrace('soak');
  const tracer = await Tracer.open({
    path,
    ringSize: '16KiB',
    ringsPerThread: 4,
    maxThreads: workers + 1,
    stabilityMs: 50,
    logLevel: 'error',
    exitHooks: false,
  });
  const control = new SharedArrayBuffer(4);
  const threads = Array.from({ length: workers }, (_, k) => {
    const worker = new Worker(new URL('./helpers/soak-worker.js', import.meta.url), {
      workerData: {
        trace: tracer.handle,
        name: `soak-${k}`,
        seed: seed * 1000 + k,
        policy: k % 2 ? 'drop-newest' : 'drop-oldest',
        control,
        close: k % 3 !== 0,
      },
    });
    const done = new Promise<number>((res, rej) => {
      worker.on('message', (m) => typeof m === 'object' && res(m.attempted));
      worker.on('error', rej);
    });
    return { worker, done, exited: new Promise((r) => worker.once('exit', r)) };
  });
  let rng = seed;
  const random = () => (rng = (Math.imul(rng, 48271) >>> 0) % 2147483647) / 2147483647;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    // Random drain trouble: a stall, a slow disk, or nothing.
    const r = random();
    if (r < 0.25) void tracer.pauseDrain();
    else if (r < 0.5) tracer.throttleDrain(64 + Math.floor(random() * 1024));
    await new Promise((res) => setTimeout(res, 20 + random() * 200));
    tracer.resumeDrain();
    tracer.throttleDrain(0);
    await new Promise((res) => setTimeout(res, random() * 100));
  }
  Atomics.store(new Int32Array(control), 0, 1);
  const attempted = await Promise.all(threads.map((t) => t.done));
  await Promise.all(threads.map((t) => t.exited));
  const summary = await tracer.close();
  const problems: string[] = [];
  if (!summary?.balanced) problems.push('the drain reports an unbalanced thread');

  const r = openTrace(path);
  const s = r.summary();
  if (r.damage) problems.push(`damage at ${r.damage.offset}: ${r.damage.reason}`);
  const lastSeq = new Map<number, number>();
  const missing = new Map<number, number>();
  for (const e of r.events()) {
    const seq = e.kind === 'bytes' ? new DataView(e.payload!.buffer, e.payload!.byteOffset).getFloat64(0, true) : e.value!;
    const prev = lastSeq.get(e.thread) ?? -1;
    if (seq <= prev) problems.push(`${r.threads[e.thread].name}: sequence ${seq} after ${prev}`);
    missing.set(e.thread, (missing.get(e.thread) ?? 0) + seq - prev - 1);
    lastSeq.set(e.thread, seq);
  }
  for (const t of s.threads) {
    const k = Number(t.name.slice('soak-'.length));
    if (t.attempted !== attempted[k]) problems.push(`${t.name}: file says ${t.attempted} attempted, the worker counted ${attempted[k]}`);
    if (!t.balanced) problems.push(`${t.name}: ${t.attempted} attempted != ${t.events} + ${t.dropped}`);
    if (t.lastChunk && !t.lastChunk.balanced) problems.push(`${t.name}: running totals of its last chunk do not add up`);
    const gaps = (missing.get(t.thread) ?? 0) + (t.attempted ?? 0) - 1 - (lastSeq.get(t.thread) ?? -1);
    if (gaps !== t.dropped) problems.push(`${t.name}: ${gaps} sequence numbers missing, ${t.dropped} counted as dropped`);
  }
  return { path, threads: s.threads.length, events: s.totals.events, dropped: s.totals.dropped, problems };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seconds = Number(process.argv[2] ?? process.env.SOAK_SECONDS ?? 60);
  const workers = Number(process.argv[3] ?? 16);
  const res = await runSoak(seconds, workers, Number(process.env.SOAK_SEED ?? Date.now() % 100000));
  console.log(JSON.stringify(res, null, 2));
  if (res.problems.length > 0) process.exit(1);
}
