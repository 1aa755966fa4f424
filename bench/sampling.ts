/**
 * Pressure sampling under a 10x overload (docs/design/backpressure.md, "Sampling under pressure"):
 * one worker records `perMs` events a millisecond (paced, values = sequence numbers) while the
 * drain is throttled to about a tenth of that; run with sampling off and on. Prints, per run, the
 * events kept, the longest run of lost sequence numbers, the losses by reason, and the reader's
 * scaled count against what was attempted.
 *   node dist/bench/sampling.js [perMs=100] [seconds=2] [drainKiBps=256]
 */
import { Tracer, openTrace } from '../src/index.js';
import { keptSequence, startScenario, tempTrace } from '../test/helpers/scenario.js';

const [perMs = 100, seconds = 2, kibps = 256] = process.argv.slice(2).map(Number);
const events = perMs * 1000 * seconds;

async function run(sampling: boolean) {
  const path = tempTrace(`sampling-bench-${sampling}`);
  const tracer = await Tracer.open({ path, ringSize: '16KiB', ringsPerThread: 8, sampling, logLevel: 'error', exitHooks: false });
  tracer.throttleDrain(kibps);
  const t0 = performance.now();
  const w = startScenario({ trace: tracer.handle, name: 'paced', mode: 'paced', events, perMs, close: true });
  const done = await w.done;
  const ms = performance.now() - t0;
  tracer.throttleDrain(0);
  await w.exited;
  await tracer.close();
  const r = openTrace(path);
  const { longestLostRun: maxGap } = keptSequence(r, events);
  const [t] = r.summary().threads;
  const [sc] = r.scaledCounts();
  const scaled = Object.values(sc.byName).reduce((a, b) => a + b, 0) + sc.unplaced;
  const alt = sc.byName['alt'] ?? 0;
  const altAttempted = Math.floor((events + 1) / 4);
  return {
    sampling,
    attempted: t.attempted,
    calls: done.calls,
    achievedPerMs: Math.round(done.calls / ms),
    kept: t.events,
    longestLostRun: maxGap,
    droppedByReason: t.droppedByReason,
    balanced: t.balanced,
    scaledTotal: Math.round(scaled),
    scaledAltErrPct: +(((alt - altAttempted) / altAttempted) * 100).toFixed(2),
  };
}

for (const sampling of [false, true]) console.log(JSON.stringify(await run(sampling)));
