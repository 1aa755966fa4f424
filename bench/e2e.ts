/**
 * Section 7: end to end. One thread records timestamped events (`record(id)`) as fast as it can
 * for a fixed time with the default configuration (64 KiB rings x 4, drop-oldest, drain batch 8,
 * idle 20 ms) into a file in a temp dir; events/s and the exact drop count from close(). Then the
 * same with a larger pool, to show what configuration change the default would need.
 */
import { performance } from 'node:perf_hooks';
import { Tracer, type TracerOptions } from '../src/index.js';
import { collectingLogger, tempDir, type Row, type RunOptions } from './common.js';

async function flatOut(seconds: number, extra: TracerOptions) {
  const log = collectingLogger();
  const tracer = await Tracer.open({ path: `${tempDir()}/e2e.rtrace`, exitHooks: false, logger: log, ...extra });
  const w = tracer.register('main');
  const id = tracer.define('tick');
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let n = 0;
  for (;;) {
    for (let i = 0; i < 1024; i++) w.record(id);
    n += 1024;
    if (performance.now() >= end) break;
  }
  const elapsed = (performance.now() - t0) / 1000;
  const m = tracer.metrics().threads.find((t) => t.slot === w.slot);
  const sum = await tracer.close();
  const t = sum?.threads[0];
  return {
    eventsPerSec: n / elapsed,
    attempted: t?.attempted ?? n,
    written: sum?.events ?? NaN,
    dropped: sum?.dropped ?? NaN,
    balanced: sum?.balanced ?? false,
    exhaustions: m?.exhaustions,
    swaps: m?.swaps,
    freeSparesMin: m?.freeSparesMin,
    drainLagMaxMs: m?.drainLagMs.max,
    stateChanges: log.entries.filter((e) => e.msg.includes('backpressure')).length,
  };
}

export async function runE2e(opts: RunOptions): Promise<Row[]> {
  const seconds = opts.quick ? 0.5 : 5;
  const rows: Row[] = [];
  const configs: Array<[string, TracerOptions]> = [
    ['default config (64 KiB x 4 rings)', {}],
    ['ringSize 1 MiB x 16 rings', { ringSize: '1MiB', ringsPerThread: 16 }],
  ];
  for (const [name, cfg] of configs) {
    const r = await flatOut(seconds, cfg);
    const dropPct = (100 * r.dropped) / r.attempted;
    rows.push({
      section: 'e2e',
      name: `${name}: events/s`,
      value: r.eventsPerSec,
      unit: 'events/s',
      detail: { seconds, ...r },
    });
    rows.push({
      section: 'e2e',
      name: `${name}: dropped events`,
      value: r.dropped,
      unit: 'events',
      target: '0 drops',
      pass: r.dropped === 0 && r.balanced,
      note: `${r.dropped} of ${r.attempted} (${dropPct.toFixed(2)}%) dropped; ${r.exhaustions} exhaustions, ${r.swaps} swaps, min free spares ${r.freeSparesMin}, max drain lag ${r.drainLagMaxMs?.toFixed(1)} ms, balanced=${r.balanced}`,
    });
  }
  return rows;
}
