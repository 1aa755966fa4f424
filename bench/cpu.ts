/**
 * Section `cpu`: what the tracer costs the whole process, in % of one core (process CPU time over
 * wall time, `process.cpuUsage()`: every thread, the drain worker included).
 *
 * Loads, each measured with the tracer off (no tracer at all) and on (default configuration, the
 * main thread registered), alternated in every round (the order flips each round), medians of the
 * per-round differences on - off:
 *  - idle: the main thread sleeps; with the tracer open nothing is recorded;
 *  - 30k and 300k events/s: a 1 ms `setInterval` tick records the events owed since the start
 *    (rate x elapsed, so timer lateness does not change the rate) with `record(id, value)`; off,
 *    the same tick runs without recording.
 * Each measurement opens a fresh tracer, runs the load for a warm-up, then measures for `seconds`,
 * then closes it (outside the measurement).
 *
 * The recording's own cost is the time spent inside the record calls (performance.now() around
 * each tick's batch; wall time, so a preempted batch counts), in % of a core; the main thread's
 * extra CPU (on - off, /proc schedstat) is the cross-check. Target at 300k/s: total extra CPU <= 2 x that, i.e. the
 * drain, timers and everything else the tracer adds cost no more than the recording itself.
 * Breakdown (Linux, /proc schedstat): main thread extra CPU, the drain worker's thread, the rest.
 */
import { performance } from 'node:perf_hooks';
import { Tracer, type Writer } from '../src/index.js';
import { collectingLogger, loud, round, sleep, tempDir, type Row, type RunOptions } from './common.js';
import { mainThreadCpuNs, processCpuUs, threadIds, threadsCpuNs } from './threadcpu.js';

export interface LoadSpec {
  name: string;
  /** events/s; 0 = idle (no tick, nothing recorded). */
  rate: number;
}

export const LOADS: LoadSpec[] = [
  { name: 'idle', rate: 0 },
  { name: '30k events/s', rate: 30_000 },
  { name: '300k events/s', rate: 300_000 },
];

export interface CpuSample {
  wallMs: number;
  /** % of a core, whole process */
  proc: number;
  /** % of a core, main thread (undefined without /proc) */
  main?: number;
  /** % of a core, the threads that appeared while the tracer opened (the drain worker) */
  drain?: number;
  /** % of a core spent inside record calls */
  inRecord: number;
  events: number;
  dropped?: number;
  balanced?: boolean;
  errors?: string[];
  /** process CPU ms of Tracer.open() + register, and of close() (outside the window) */
  openMs?: number;
  closeMs?: number;
}

let sink = 0;

/**
 * Runs one load for warmupMs + seconds, tracer on or off; measures the last `seconds`.
 * Exported for bench/cpu-profile.ts (the same load under --cpu-prof).
 */
export async function measureLoad(load: LoadSpec, on: boolean, seconds: number, warmupMs = 1000): Promise<CpuSample> {
  const log = collectingLogger();
  let tracer: Tracer | undefined;
  let w: Writer | undefined;
  let id = 0;
  let drainTids: number[] = [];
  let openMs: number | undefined;
  if (on) {
    const c0 = processCpuUs();
    const before = new Set(threadIds());
    tracer = await Tracer.open({ path: `${tempDir()}/cpu-${load.rate}.rtrace`, exitHooks: false, logLevel: 'warn', logger: log });
    drainTids = threadIds().filter((t) => !before.has(t));
    w = tracer.register('main');
    id = tracer.define('sample');
    openMs = (processCpuUs() - c0) / 1000;
  }
  let inRecordMs = 0;
  let t0 = performance.now();
  let done = 0;
  const tick = () => {
    const owe = Math.floor((load.rate * (performance.now() - t0)) / 1000) - done;
    if (owe <= 0) return;
    const a = performance.now();
    if (w) for (let i = 0; i < owe; i++) w.record(id, i);
    else for (let i = 0; i < owe; i++) sink += i;
    inRecordMs += performance.now() - a;
    done += owe;
  };
  const timer = load.rate > 0 ? setInterval(tick, 1) : undefined;
  await sleep(warmupMs);
  // The measured window.
  inRecordMs = 0;
  const e0 = done;
  const p0 = processCpuUs();
  const m0 = mainThreadCpuNs();
  const d0 = threadsCpuNs(drainTids);
  t0 = performance.now() - (done * 1000) / Math.max(load.rate, 1); // keep the schedule continuous
  const w0 = performance.now();
  await sleep(seconds * 1000);
  const wallMs = performance.now() - w0;
  const p1 = processCpuUs();
  const m1 = mainThreadCpuNs();
  const d1 = threadsCpuNs(drainTids);
  const events = done - e0;
  if (timer) clearInterval(timer);
  const pct = (ms: number) => (100 * ms) / wallMs;
  const s: CpuSample = {
    wallMs,
    proc: pct((p1 - p0) / 1000),
    main: m0 === undefined || m1 === undefined ? undefined : pct((m1 - m0) / 1e6),
    drain: drainTids.length ? pct((d1 - d0) / 1e6) : undefined,
    inRecord: pct(inRecordMs),
    events,
    openMs,
  };
  if (tracer) {
    const c0 = processCpuUs();
    const sum = await tracer.close();
    s.closeMs = (processCpuUs() - c0) / 1000;
    s.dropped = sum?.dropped;
    s.balanced = sum?.balanced;
    s.errors = log.entries.filter((e) => e.level === 'error').map((e) => e.msg);
  }
  if (sink === -1) console.log(sink);
  return s;
}

const median = (a: number[]) => {
  const b = a.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (b.length === 0) return NaN;
  const m = b.length >> 1;
  return b.length % 2 ? b[m] : (b[m - 1] + b[m]) / 2;
};

export async function runCpu(opts: RunOptions): Promise<Row[]> {
  const seconds = opts.quick ? 0.5 : 2;
  const rounds = opts.quick ? 1 : 5;
  const warmupMs = opts.quick ? 300 : 1000;
  // Warm-up: the first open starts threads that stay (libuv's pool), and the loops get compiled.
  await measureLoad(LOADS[2], true, 0.2, 100);
  await measureLoad(LOADS[2], false, 0.2, 100);
  const res = LOADS.map(() => ({ on: [] as CpuSample[], off: [] as CpuSample[] }));
  for (let r = 0; r < rounds; r++) {
    for (const [k, load] of LOADS.entries()) {
      for (const on of r % 2 === 0 ? [false, true] : [true, false]) {
        const s = await measureLoad(load, on, seconds, warmupMs);
        (on ? res[k].on : res[k].off).push(s);
      }
    }
  }
  const rows: Row[] = [];
  const pct = (v: number) => `${v.toFixed(2)} %`;
  const signed = (v: number) => `${v >= 0 ? '+' : ''}${pct(v)}`;
  for (const [k, load] of LOADS.entries()) {
    const { on, off } = res[k];
    const diff = (f: (s: CpuSample) => number | undefined) => median(on.map((s, i) => (f(s) ?? NaN) - (f(off[i]) ?? NaN)));
    const extra = diff((s) => s.proc);
    const mainExtra = diff((s) => s.main);
    const drain = median(on.map((s) => s.drain ?? NaN));
    const inRecord = median(on.map((s) => s.inRecord));
    const dropped = on.reduce((n, s) => n + (s.dropped ?? 0), 0);
    const errors = [...new Set(on.flatMap((s) => s.errors ?? []))];
    if (dropped) loud(`cpu/${load.name}: ${dropped} events dropped (the rate is far below what the drain takes)`);
    if (errors.length) loud(`cpu/${load.name}: tracer errors: ${errors.join('; ')}`);
    const perRound = {
      onProcPct: on.map((s) => round(s.proc, 3)),
      offProcPct: off.map((s) => round(s.proc, 3)),
      onMainPct: on.map((s) => round(s.main ?? NaN, 3)),
      offMainPct: off.map((s) => round(s.main ?? NaN, 3)),
      drainThreadPct: on.map((s) => round(s.drain ?? NaN, 3)),
      inRecordPct: on.map((s) => round(s.inRecord, 3)),
      eventsPerSec: on.map((s) => Math.round((s.events * 1000) / s.wallMs)),
    };
    const detail = { seconds, warmupMs, rounds, dropped, balanced: on.every((s) => s.balanced !== false), ...perRound };
    const medOn = median(on.map((s) => s.proc));
    const medOff = median(off.map((s) => s.proc));
    const what = `process CPU on - off (medians ${pct(medOn)} vs ${pct(medOff)})`;
    if (load.rate === 0) {
      rows.push({
        section: 'cpu',
        name: 'idle tracer (open, main registered, nothing recorded): extra CPU',
        value: extra,
        unit: '% core',
        target: '<= 0.3 % of a core',
        pass: extra <= 0.3,
        detail: { ...detail, drainThreadPct: drain, mainExtraPct: mainExtra },
        note: `${what}; drain worker thread ${pct(drain)}, main thread ${signed(mainExtra)}; median of ${rounds} paired differences, measured from ${warmupMs} ms after open()`,
      });
      rows.push({
        section: 'cpu',
        name: 'one-time: Tracer.open() + register / close() (idle)',
        value: median(on.map((s) => s.openMs ?? NaN)),
        unit: 'ms CPU',
        detail: { openMs: on.map((s) => round(s.openMs ?? NaN, 1)), closeMs: on.map((s) => round(s.closeMs ?? NaN, 1)) },
        note: `process CPU of open() (starts the drain worker); close(): ${median(on.map((s) => s.closeMs ?? NaN)).toFixed(1)} ms; the drain isolate's warm-up after open (JIT, ~0.5 s) is not in the idle row`,
      });
      continue;
    }
    // The recording's own cost: the time spent in the record calls, measured directly in the same
    // runs (the main thread's extra CPU, a difference of two noisy numbers, is the cross-check).
    const target = load.rate === 300_000;
    rows.push({
      section: 'cpu',
      name: `${load.name}: extra CPU`,
      value: extra,
      unit: '% core',
      baseline: `time in record calls (${pct(inRecord)})`,
      ratio: extra / inRecord,
      target: target ? "<= 2x the recording's cost" : undefined,
      pass: target ? dropped === 0 && extra <= 2 * inRecord : undefined,
      detail: { ...detail, ratioToMainThreadExtra: round(extra / mainExtra) },
      note: `${what}; median of ${rounds} paired differences; ${(extra / mainExtra).toFixed(2)}x the main thread's extra CPU`,
    });
    const nsPerEvent = ((inRecord / 100) * 1e9) / load.rate;
    rows.push({
      section: 'cpu',
      name: `${load.name}: main thread extra CPU`,
      value: mainExtra,
      unit: '% core',
      note: 'main thread CPU on - off (/proc schedstat): the recording, its swaps and the periodic flush',
    });
    rows.push({
      section: 'cpu',
      name: `${load.name}: time in record calls`,
      value: inRecord,
      unit: '% core',
      detail: { nsPerEvent: round(nsPerEvent, 1) },
      note: `performance.now() around each tick's batch of record(id, value), wall time (a preempted batch counts): ${nsPerEvent.toFixed(1)} ns per event`,
    });
    rows.push({ section: 'cpu', name: `${load.name}: drain worker thread CPU`, value: drain, unit: '% core' });
    rows.push({
      section: 'cpu',
      name: `${load.name}: other threads' extra CPU`,
      value: extra - mainExtra - drain,
      unit: '% core',
      note: 'extra - main thread extra - drain thread (V8 platform threads: GC and compilation for both isolates; libuv)',
    });
  }
  return rows;
}
