/**
 * The pool forecast (docs/design/backpressure.md, "Adaptive thresholds" and "Predictive entry"):
 * what it costs when nothing is wrong and what it saves when the drain falls behind. One worker
 * records paced events (values = sequence numbers) against a drain throttled to `drainKiBps`;
 * each load runs with the forecast off, predictive only, adaptive only, and both, `rounds` times
 * (medians printed). Loads:
 *   - keeps-up:   0.6x what the drain writes (false alarms: PRESSURE entries, time in PRESSURE)
 *   - bursty:     3x for 100 ms, 0.3x for 400 ms (0.84x on average; a burst fits in the pool),
 *                 with the priority mix: debug events shed that would have fitted
 *   - behind-1.2x and -1.5x with 20 % debug / 1 % critical events (priority mix): normal events lost to
 *                 pool_exhausted, debug events shed, PRESSURE ahead of the mark
 *   - behind-10x  with sampling on: events lost to pool_exhausted, the longest run lost
 *   - stalls:     0.7x with the priority mix, the drain stalled for 600 ms every 2 s (a disk that
 *                 stops now and then): what early PRESSURE saves during a stall
 *   node dist/bench/forecast.js [rounds=3] [seconds=4] [drainKiBps=256] [horizonMs=1000] [load filter]
 */
import { Tracer, openTrace, type TracerOptions } from '../src/index.js';
import { keptSequence, startScenario, tempTrace } from '../test/helpers/scenario.js';

const [rounds = 3, seconds = 4, kibps = 256, horizonMs = 1000] = process.argv.slice(2, 6).map(Number);
const only = process.argv[6] ?? '';
/** ~24-byte value records plus chunk overhead: events a ms that fill `kibps`. */
const drainPerMs = (kibps * 1024) / 25 / 1000;

interface Load {
  name: string;
  perMs: number;
  priorities?: boolean;
  sampling?: boolean;
  burst?: { burstMs: number; quietMs: number; quietPerMs: number };
  /** Events a ms on average (default perMs). */
  avgPerMs?: number;
  /** The drain stops for `ms` every `everyMs`. */
  stalls?: { ms: number; everyMs: number };
}
const LOADS: Load[] = [
  { name: 'keeps-up-0.6x', perMs: Math.round(0.6 * drainPerMs) },
  {
    name: 'bursty-0.84x-priorities',
    perMs: Math.round(3 * drainPerMs),
    priorities: true,
    burst: { burstMs: 100, quietMs: 400, quietPerMs: 0.3 * drainPerMs },
    avgPerMs: 0.84 * drainPerMs,
  },
  { name: 'behind-1.2x-priorities', perMs: Math.round(1.2 * drainPerMs), priorities: true },
  { name: 'behind-1.5x-priorities', perMs: Math.round(1.5 * drainPerMs), priorities: true },
  { name: 'behind-10x-sampling', perMs: Math.round(10 * drainPerMs), sampling: true },
  { name: 'stalls-0.7x-priorities', perMs: Math.round(0.7 * drainPerMs), priorities: true, stalls: { ms: 600, everyMs: 2000 } },
];
const CONFIGS: Array<{ name: string; options: TracerOptions }> = [
  { name: 'off', options: {} },
  { name: 'predictive', options: { predictiveHorizonMs: horizonMs } },
  { name: 'adaptive', options: { adaptiveThresholds: true } },
  { name: 'both', options: { adaptiveThresholds: true, predictiveHorizonMs: horizonMs } },
];

async function runOnce(load: Load, options: TracerOptions) {
  const events = Math.round((load.avgPerMs ?? load.perMs) * 1000 * seconds);
  const path = tempTrace('forecast-bench');
  const tracer = await Tracer.open({
    path,
    ringSize: '16KiB',
    ringsPerThread: 8,
    sampling: load.sampling === true,
    logLevel: 'error',
    exitHooks: false,
    ...options,
  });
  tracer.throttleDrain(kibps);
  const w = startScenario({
    trace: tracer.handle,
    name: 'paced',
    mode: 'paced',
    events,
    perMs: load.perMs,
    priorities: load.priorities,
    burst: load.burst,
    close: true,
  });
  let maxRaise = 0;
  const poll = setInterval(() => {
    const t = tracer.metrics().threads.find((x) => x.name === 'paced');
    if (t) maxRaise = Math.max(maxRaise, t.thresholdRaise);
  }, 5);
  let stalling = true;
  const stalls = (async () => {
    const st = load.stalls;
    if (!st) return;
    await w.registered;
    const t0 = performance.now();
    for (let k = 1; stalling; k++) {
      await sleepUntil(t0 + k * st.everyMs - st.ms, () => stalling);
      if (!stalling) break;
      await tracer.pauseDrain();
      await sleepUntil(t0 + k * st.everyMs, () => stalling);
      tracer.resumeDrain();
    }
  })();
  await w.done;
  stalling = false;
  await stalls;
  tracer.resumeDrain();
  clearInterval(poll);
  tracer.throttleDrain(0);
  await w.exited;
  const summary = await tracer.close();
  const s = summary!.threads.find((x) => x.name === 'paced')!;
  const r = openTrace(path);
  const { longestLostRun } = keptSequence(r, events);
  const [ft] = r.summary().threads;
  return {
    balanced: s.balanced && ft.balanced && ft.attempted === events,
    pressureEntries: s.transitions['normal->pressure'] ?? 0,
    predicted: s.predictedPressureEntries,
    pressureMs: Math.round(s.timeInStateMs.pressure),
    maxRaise,
    poolExhausted: s.droppedByReason.pool_exhausted ?? 0,
    normalLost: s.droppedByPriority.normal - (s.droppedByReason.sampled ?? 0),
    criticalLost: s.droppedByPriority.critical,
    shed: s.droppedByReason.shed ?? 0,
    sampled: s.droppedByReason.sampled ?? 0,
    longestLostRun,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Waits until `at` (performance.now() ms), in short steps so that `go()` turning false ends it. */
async function sleepUntil(at: number, go: () => boolean): Promise<void> {
  while (go() && performance.now() < at) await new Promise((r) => setTimeout(r, Math.min(20, Math.max(1, at - performance.now()))));
}

console.log(
  `# forecast bench: ${rounds} rounds of ${seconds} s, drain ${kibps} KiB/s (~${drainPerMs.toFixed(1)} events/ms), horizon ${horizonMs} ms`,
);
for (const load of LOADS.filter((l) => l.name.includes(only))) {
  for (const c of CONFIGS) {
    const runs = [];
    // Alternate nothing here: each load's configs run back to back, rounds in sequence.
    for (let i = 0; i < rounds; i++) runs.push(await runOnce(load, c.options));
    const keys = Object.keys(runs[0]).filter((k) => k !== 'balanced') as Array<Exclude<keyof (typeof runs)[number], 'balanced'>>;
    const row: Record<string, unknown> = { load: load.name, config: c.name, balanced: runs.every((x) => x.balanced) };
    for (const k of keys) row[k] = median(runs.map((x) => x[k]));
    console.log(JSON.stringify(row));
  }
}
