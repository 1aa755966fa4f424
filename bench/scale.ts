/**
 * Section 8: scalability. 1..64 worker threads recording together into one tracer (default
 * configuration: 256 KiB x 8 rings per thread, 64 slots), each flat out or paced on spareRings();
 * aggregate events/s, drops per thread (exact, from close()), shared memory and peak RSS. Then
 * thread isolation: one flooding thread and quiet threads; the quiet threads must drop nothing.
 */
import { Worker } from 'node:worker_threads';
import { Tracer } from '../src/index.js';
import { collectingLogger, type Row, type RunOptions, tempDir } from './common.js';
import type { BenchWorkerData, BenchWorkerDone } from './worker.js';

const MiB = 1024 * 1024;

async function scenario(workers: Array<{ name: string; mode: BenchWorkerData['mode'] }>, durationMs: number) {
  const log = collectingLogger();
  const tracer = await Tracer.open({ path: `${tempDir()}/scale.rtrace`, exitHooks: false, logger: log, closeTimeoutMs: 5000 });
  const go = new SharedArrayBuffer(4);
  const goI32 = new Int32Array(go);
  const done: BenchWorkerDone[] = [];
  let rssPeak = process.memoryUsage().rss;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 20);
  const exits: Promise<void>[] = [];
  const readies: Promise<void>[] = [];
  for (const spec of workers) {
    const data: BenchWorkerData = { handle: tracer.handle, mode: spec.mode, durationMs, go, name: spec.name };
    const wk = new Worker(new URL('./worker.js', import.meta.url), { workerData: data });
    readies.push(
      new Promise((res, rej) => {
        wk.on('message', (m: { type: string }) => {
          if (m.type === 'ready') res();
          else if (m.type === 'done') done.push(m as BenchWorkerDone);
        });
        wk.once('error', rej);
      }),
    );
    exits.push(
      new Promise((res, rej) => {
        wk.once('exit', () => res());
        wk.once('error', rej);
      }),
    );
  }
  await Promise.all(readies);
  const rssReady = process.memoryUsage().rss;
  Atomics.store(goI32, 0, 1);
  Atomics.notify(goI32, 0);
  await Promise.all(exits);
  clearInterval(sampler);
  rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  const sum = await tracer.close();
  const byName = new Map((sum?.threads ?? []).map((t) => [t.name, t]));
  const threads = done.map((d) => {
    const t = byName.get(d.name);
    return { ...d, dropped: t?.dropped ?? NaN, written: t?.events ?? NaN, attempted: t?.attempted ?? NaN };
  });
  return {
    threads,
    sharedBytes: tracer.sharedBytes,
    maxThreads: tracer.handle.geometry.maxThreads,
    rssReady,
    rssPeak,
    balanced: sum?.balanced ?? false,
    complete: sum?.complete ?? false,
  };
}

export async function runScale(opts: RunOptions): Promise<Row[]> {
  const counts = opts.quick ? [1, 2, 4] : [1, 2, 4, 8, 16, 32, 64];
  const durationMs = opts.quick ? 200 : 1000;
  const rows: Row[] = [];
  for (const mode of ['flat', 'paced'] as const) {
    for (const n of counts) {
      const r = await scenario(
        Array.from({ length: n }, (_, i) => ({ name: `w${i}`, mode })),
        durationMs,
      );
      const events = r.threads.reduce((a, t) => a + t.events, 0);
      const secs = Math.max(...r.threads.map((t) => t.elapsedMs)) / 1000;
      const drops = r.threads.map((t) => t.dropped);
      const totalDropped = drops.reduce((a, b) => a + b, 0);
      const perThreadShared = r.sharedBytes / r.maxThreads;
      rows.push({
        section: 'scale',
        name: `${mode}, ${n} worker${n > 1 ? 's' : ''}`,
        value: events / secs,
        unit: 'events/s',
        target: mode === 'paced' ? '0 drops' : undefined,
        pass: mode === 'paced' ? totalDropped === 0 && r.balanced : undefined,
        detail: {
          workers: n,
          mode,
          durationMs,
          events,
          dropped: totalDropped,
          droppedPerThread: drops,
          dropPct: (100 * totalDropped) / events,
          pacingWaits: r.threads.reduce((a, t) => a + t.waits, 0),
          sharedBytes: r.sharedBytes,
          sharedBytesPerThread: perThreadShared,
          rssReadyMiB: r.rssReady / MiB,
          rssPeakMiB: r.rssPeak / MiB,
          balanced: r.balanced,
          complete: r.complete,
        },
        note: `drops: total ${totalDropped} (${((100 * totalDropped) / events).toFixed(1)}%), per thread min ${Math.min(...drops)} / max ${Math.max(...drops)}; shared ${(r.sharedBytes / MiB).toFixed(1)} MiB (${(perThreadShared / 1024).toFixed(0)} KiB per slot); RSS peak ${(r.rssPeak / MiB).toFixed(0)} MiB; balanced=${r.balanced}`,
      });
    }
  }
  // Isolation: one flooding thread and quiet ones.
  const quiet = opts.quick ? 3 : 7;
  const iso = await scenario(
    [{ name: 'flood', mode: 'flat' as const }, ...Array.from({ length: quiet }, (_, i) => ({ name: `quiet${i}`, mode: 'quiet' as const }))],
    opts.quick ? 300 : 2000,
  );
  const flood = iso.threads.find((t) => t.name === 'flood')!;
  const quiets = iso.threads.filter((t) => t.mode === 'quiet');
  const quietDropped = quiets.reduce((a, t) => a + t.dropped, 0);
  rows.push({
    section: 'scale',
    name: `isolation: flooding thread (1 flood + ${quiet} quiet)`,
    value: flood.events / (flood.elapsedMs / 1000),
    unit: 'events/s',
    detail: { events: flood.events, dropped: flood.dropped },
    note: `flood dropped ${flood.dropped} of ${flood.events} (${((100 * flood.dropped) / flood.events).toFixed(1)}%)`,
  });
  rows.push({
    section: 'scale',
    name: `isolation: quiet threads' drops (${quiet} threads, ~10k ev/s each)`,
    value: quietDropped,
    unit: 'events',
    target: '0 drops',
    pass: quietDropped === 0 && iso.balanced,
    detail: { perThread: quiets.map((t) => ({ name: t.name, events: t.events, dropped: t.dropped })) },
    note: `quiet threads recorded ${quiets.reduce((a, t) => a + t.events, 0)} events in total`,
  });
  return rows;
}
