/**
 * Predictive entry and adaptive marks with real threads: a worker records about 1.2 times what a
 * throttled drain writes for 3 s, so its spares go slowly and its rings come back later and later
 * (the forecast needs about a horizon of history before it acts: a sustained trend, not a burst). The
 * forecast must enter PRESSURE with spares still above the mark, the marks must follow the ring
 * service time the drain measures, the idle thread must get back to NORMAL by itself once the
 * drain catches up (a held PRESSURE lapses), and the accounting stays exact.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { Tracer, openTrace, type ThreadMetrics } from '../src/index.js';
import { registerPrometheus } from '../src/metrics/prometheus.js';
import { startScenario, tempTrace } from './helpers/scenario.js';
import { waitFor } from './helpers/wait.js';

const quiet = { logLevel: 'error' as const, exitHooks: false };
/** 13 value events a ms (~305 KiB/s with chunk headers) against a drain throttled to 256 KiB/s:
 * the 7 spare rings of 16 KiB last about 2 s. */
const PER_MS = 13;
const DRAIN_KIBPS = 256;
const EVENTS = 39_000;

interface Run {
  path: string;
  /** The most the worker's marks were raised by, its longest ring service time, and its forecast
   * entries, as metrics() showed them during the run. */
  maxRaise: number;
  maxServiceMs: number;
  predicted: number;
  summary: Awaited<ReturnType<Tracer['close']>>;
  prometheus: string;
}

async function behind(options: { adaptiveThresholds: boolean; predictiveHorizonMs: number }): Promise<Run> {
  const path = tempTrace('forecast');
  const tracer = await Tracer.open({ path, ringSize: '16KiB', ringsPerThread: 8, stabilityMs: 50, ...options, ...quiet });
  const control = new SharedArrayBuffer(8);
  const run = startScenario({
    trace: tracer.handle,
    name: 'behind',
    mode: 'paced',
    events: EVENTS,
    perMs: PER_MS,
    linger: 'loop',
    close: true,
    control,
  });
  const thread = (): ThreadMetrics | undefined => tracer.metrics().threads.find((t) => t.name === 'behind');
  let maxRaise = 0;
  let maxServiceMs = 0;
  let predicted = 0;
  let finished = false;
  try {
    tracer.throttleDrain(DRAIN_KIBPS);
    await run.registered;
    void run.done.then(() => (finished = true));
    await waitFor(
      () => {
        const t = thread();
        if (t) {
          maxRaise = Math.max(maxRaise, t.thresholdRaise);
          maxServiceMs = Math.max(maxServiceMs, t.ringServiceMs);
          predicted = Math.max(predicted, t.predictedPressureEntries);
        }
        return finished;
      },
      'the paced run to finish',
      60_000,
      2,
    );
    const done = await run.done;
    assert.equal(done.calls, EVENTS);
    // The drain catches up; the idle worker (its event loop turning, recording nothing) must
    // leave PRESSURE/RECOVERY by itself: a forecast's hold lapses, the spares come back.
    tracer.throttleDrain(0);
    await waitFor(() => thread()?.state === 'normal', 'the idle thread back in NORMAL');
    const registry = new Registry();
    registerPrometheus(tracer, registry);
    const prometheus = await registry.metrics();
    Atomics.store(new Int32Array(control), 0, 1);
    await run.exited;
    const summary = await tracer.close();
    return { path, maxRaise, maxServiceMs, predicted, summary, prometheus };
  } finally {
    await run.worker.terminate();
  }
}

/** Every event is in the file or counted, and the file agrees with the close summary. */
function checkAccounting(r: Run): void {
  const t = r.summary!.threads.find((x) => x.name === 'behind')!;
  assert.equal(t.attempted, EVENTS);
  assert.equal(t.balanced, true);
  const [ft] = openTrace(r.path)
    .summary()
    .threads.filter((x) => x.name === 'behind');
  assert.equal(ft.attempted, EVENTS);
  assert.equal(ft.events + ft.dropped, EVENTS);
  assert.equal(ft.balanced, true);
}

describe('the pool forecast with a real drain falling behind', () => {
  it('predictive entry: PRESSURE with spares above the mark, held while forecast, lapsing once idle; counted everywhere', async () => {
    const r = await behind({ adaptiveThresholds: false, predictiveHorizonMs: 1000 });
    const t = r.summary!.threads.find((x) => x.name === 'behind')!;
    // A forecast entry is only counted when the mark's own check (free <= pressureSpares) did not
    // fire at that swap: the thread was warned with spares still above the mark.
    assert.ok(t.predictedPressureEntries >= 1, `predicted entries: ${t.predictedPressureEntries}`);
    assert.ok(t.predictedPressureEntries <= t.transitions['normal->pressure']);
    assert.ok(r.predicted >= 1, 'metrics() showed it while the thread was live');
    assert.match(r.prometheus, /ringtrace_backpressure_predicted_entries_total\{thread="behind",slot="\d+"\} [1-9]/);
    assert.equal(r.maxRaise, 0, 'adaptive marks off');
    checkAccounting(r);
  });

  it('adaptive marks: raised as the rings come back later, bounded by the spare count; exact accounting', async () => {
    const r = await behind({ adaptiveThresholds: true, predictiveHorizonMs: 0 });
    assert.ok(r.maxServiceMs > 0, 'the drain measured the ring service time');
    // 8 rings: 7 spares, configured marks 2 and 5: at most 2 spares up (RECOVERY at 7).
    assert.ok(r.maxRaise >= 1 && r.maxRaise <= 2, `raise ${r.maxRaise} (service up to ${r.maxServiceMs} ms)`);
    const t = r.summary!.threads.find((x) => x.name === 'behind')!;
    assert.equal(t.predictedPressureEntries, 0, 'no forecast entries without a horizon');
    assert.match(r.prometheus, /ringtrace_ring_service_seconds\{thread="behind",slot="\d+"\} \d/);
    assert.match(r.prometheus, /ringtrace_threshold_raise_spares\{thread="behind",slot="\d+"\} [0-2]/);
    checkAccounting(r);
  });
});
