/**
 * The writer's pool forecast (src/record/forecast.ts): rates, adaptive marks and predictive
 * entry, alone and driving the real state machine (BackpressureState on shared memory) through
 * swapStep(), what the writer calls at each swap. A simulated drain returns each ring a service
 * time after its hand-over (and, with a throughput, no sooner than a given time after the one
 * before); the properties check the marks' bounds and pacing, and that the forecast neither flaps
 * nor keeps a thread in PRESSURE under a load the drain sustains. The forecast PRESSURE's hold is
 * checked on the state machine and through a real Drain with a fake clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BackpressureState, BpState, type BpStateValue, type SpareCount, type Thresholds } from '../src/shm/backpressure.js';
import { Layout, SharedViews, initControl } from '../src/shm/layout.js';
import { PoolForecast, swapStep } from '../src/record/forecast.js';
import { Drain } from '../src/drain/drain.js';
import type { TraceSink } from '../src/file/format.js';
import { claimSlot, encodeThreadName } from '../src/shm/registry.js';
import { Writer } from '../src/record/writer.js';

const SPARES = 7;
const BASE: Thresholds = { pressureSpares: 2, recoverySpares: 5, stabilityUs: 250_000 };
/** A wider band (1 .. 6 of 7 spares): room for a raise of 3. */
const WIDE: Thresholds = { pressureSpares: 1, recoverySpares: 6, stabilityUs: 250_000 };
const { NORMAL, PRESSURE, DROPPING } = BpState;
const spares = (n: number): SpareCount => ({ size: () => n });

/** Swaps every `dtUs`, the free count following `returned(i)` spares back at swap i (clamped to a
 * pool large enough never to run out: only the rise counts). */
function drive(f: PoolForecast, swaps: number, dtUs: number, returned: (i: number) => number, serviceUs = 0, at = { t: 0, free: 1_000 }) {
  for (let i = 0; i < swaps; i++) {
    at.t += dtUs;
    at.free += returned(i) - 1;
    f.onSwap(at.t, at.free, serviceUs);
  }
  return at;
}
const keepsUp = () => 1;
const twoThirds = (i: number) => (i % 3 === 0 ? 0 : 1); // rings back at 2/3 of the pace they go
const none = () => 0;

describe('PoolForecast: rates and time to exhaustion', () => {
  it('a drain that returns a ring per swap: no exhaustion forecast, whatever the pace', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 50_000 });
    const at = drive(f, 500, 1_000, keepsUp);
    assert.ok(Math.abs(f.fillRate - 1 / 1000) < 1e-5, `fill ${f.fillRate}`);
    assert.equal(f.exhaustionUs(4), Infinity);
    assert.equal(f.predictsPressure(at.t, 4), false);
    assert.equal(f.holdUntilUs(at.t, 4), 0);
  });

  it('a drain that returns nothing: exhaustion in free x the swap interval, forecast once the window is measured', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 50_000 });
    // The window is half the horizon (25 ms); with no round trip known, forecasts wait for three
    // windows. Before that, nothing is forecast (a burst's first swaps come before any ring could
    // come back).
    const at = drive(f, 70, 1_000, none);
    assert.ok(f.exhaustionUs(4) < 50_000);
    assert.equal(f.predictsPressure(at.t, 4), false, 'not measured for a whole window yet');
    assert.equal(f.holdUntilUs(at.t, 4), 0);
    drive(f, 480, 1_000, none, 0, at);
    assert.ok(Math.abs(f.exhaustionUs(4) - 4_000) < 100, `tte ${f.exhaustionUs(4)}`);
    assert.equal(f.predictsPressure(at.t, 4), true, '4 ms < 50 ms');
    assert.equal(f.holdUntilUs(at.t, 4), at.t + 50_000);
  });

  it('a pause longer than the window: measured afresh before the next forecast', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 50_000 });
    const at = drive(f, 500, 1_000, none);
    assert.equal(f.predictsPressure(at.t, 4), true);
    at.t += 1_000_000; // a second of silence
    drive(f, 60, 1_000, none, 0, at);
    assert.equal(f.predictsPressure(at.t, 4), false);
    drive(f, 20, 1_000, none, 0, at);
    assert.equal(f.predictsPressure(at.t, 4), true);
  });

  it('no horizon: never predicts, never holds', () => {
    const f = new PoolForecast(BASE);
    const at = drive(f, 500, 10, none);
    assert.ok(f.exhaustionUs(3) < Infinity);
    assert.equal(f.predictsPressure(at.t, 3), false);
    assert.equal(f.holdUntilUs(at.t, 3), 0);
  });

  it('the hold outlasts the entry: held while exhaustion is forecast within two horizons', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 10_000 });
    const at = drive(f, 200, 1_000, none); // 1 ring a ms, none back
    // 15 spares' worth is 15 ms away: not an entry (> 10 ms), but a hold (< 20 ms).
    assert.equal(f.predictsPressure(at.t, 15), false);
    assert.equal(f.holdUntilUs(at.t, 15), at.t + 10_000);
    assert.equal(f.holdUntilUs(at.t, 25), 0);
  });
});

describe('PoolForecast: adaptive marks', () => {
  it('off: the marks stay where they were configured', () => {
    const f = new PoolForecast(BASE);
    drive(f, 300, 1_000, none, 50_000);
    assert.equal(f.raise, 0);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [2, 5]);
  });

  it('a drain that keeps up, however slow its round trips: no raise (a sustainable load is not pressure)', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true });
    drive(f, 1_000, 1_000, keepsUp, 6_000);
    assert.equal(f.depleting(1_000_000), false);
    assert.equal(f.raise, 0);
  });

  it('spares going, rings 3 swaps away: the PRESSURE mark rises to 3 spares; RECOVERY stays', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true });
    const at = drive(f, 500, 1_000, twoThirds, 3_000);
    assert.equal(f.depleting(at.t), true);
    assert.equal(f.raise, 1);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [3, 5]);
  });

  it('the raise is bounded: two spares of hysteresis below the RECOVERY mark are kept', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true });
    drive(f, 500, 1_000, none, 1_000_000);
    assert.equal(f.maxRaise, 1);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [3, 5]);
    assert.equal(new PoolForecast({ ...WIDE, adaptive: true }).maxRaise, 3);
    // A band of two already: nothing to raise.
    assert.equal(new PoolForecast({ ...BASE, recoverySpares: 4, adaptive: true }).maxRaise, 0);
  });

  it('comes down one spare per stability period once the spares stop going', () => {
    const f = new PoolForecast({ ...WIDE, adaptive: true });
    const at = drive(f, 500, 1_000, none, 10_000);
    assert.equal(f.raise, 3);
    while (f.raise === 3) drive(f, 1, 1_000, keepsUp, 10_000, at);
    const from = at.t;
    while (f.raise === 2) drive(f, 1, 1_000, keepsUp, 10_000, at);
    const firstStep = at.t - from;
    while (f.raise === 1) drive(f, 1, 1_000, keepsUp, 10_000, at);
    // The rates need part of a window to show the drain keeping up, then a whole period.
    assert.ok(firstStep >= BASE.stabilityUs && firstStep <= BASE.stabilityUs + 200_000, `first step after ${firstStep} µs`);
    assert.ok(at.t - from - firstStep >= BASE.stabilityUs, 'the second step waits a whole period more');
    assert.equal(f.raise, 0);
  });
});

/** A random swap sequence: gaps, spares back, the service time. */
const swapSeq = fc.array(
  fc.record({
    dtUs: fc.integer({ min: 1, max: 50_000 }),
    returned: fc.integer({ min: 0, max: 3 }),
    serviceUs: fc.integer({ min: 0, max: 200_000 }),
  }),
  { minLength: 1, maxLength: 400 },
);

/** Up to 10 % either way (a Lehmer generator; seed 0: none). */
function jitterer(seed: number): () => number {
  let rng = seed;
  return () => {
    if (seed === 0) return 1;
    rng = (Math.imul(rng, 48271) >>> 0) % 2147483647;
    return 0.9 + 0.2 * (rng / 2147483647);
  };
}

describe('PoolForecast: properties', () => {
  it('whatever the input: the mark within bounds, hysteresis kept, lowered one spare at a time, a stability period apart', () => {
    fc.assert(
      fc.property(swapSeq, fc.integer({ min: 0, max: 3 }), (seq, p) => {
        const th = { pressureSpares: p, recoverySpares: p + 4, stabilityUs: 20_000, adaptive: true, horizonUs: 10_000 };
        const f = new PoolForecast(th);
        let t = 0;
        let free = 1_000;
        let lastChange = -Infinity;
        for (const s of seq) {
          const before = f.raise;
          free += s.returned - 1;
          f.onSwap((t += s.dtUs), free, s.serviceUs);
          assert.ok(f.raise >= 0 && f.raise <= f.maxRaise);
          assert.equal(f.marks.pressureSpares, p + f.raise);
          assert.equal(f.marks.recoverySpares, p + 4, 'the RECOVERY mark stays');
          assert.ok(f.marks.recoverySpares - f.marks.pressureSpares >= 2, 'two spares of hysteresis kept');
          if (f.raise < before) {
            assert.equal(f.raise, before - 1);
            assert.ok(t - lastChange >= th.stabilityUs, `lowered ${t - lastChange} µs after the last change`);
          }
          if (f.raise !== before) lastChange = t;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('spares going steadily, up to 10 % jitter in pace and service time: the marks only ever rise (no flapping)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 5_000 }),
        fc.double({ min: 0.3, max: 8, noNaN: true }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (dtUs, ratio, seed) => {
          const jitter = jitterer(seed);
          const f = new PoolForecast({ ...WIDE, adaptive: true });
          let t = 0;
          let free = 1_000_000;
          let changes = 0;
          for (let i = 0; i < 2_000; i++) {
            const before = f.raise;
            free += (i % 5 < 2 ? 1 : 0) - 1; // 2 back for 5 taken
            f.onSwap((t += dtUs * jitter()), free, ratio * dtUs * jitter());
            assert.ok(f.raise >= before, `lowered at swap ${i} (ratio ${ratio})`);
            if (f.raise !== before) changes++;
          }
          assert.ok(changes <= f.maxRaise);
        },
      ),
      { numRuns: 200 },
    );
  });
});

/** The shared-memory state machine of one thread. */
function machine(pool = SPARES): { bp: BackpressureState; edges: Array<[BpStateValue, BpStateValue, number]> } {
  const layout = new Layout({ maxThreads: 1, ringsPerThread: pool + 1, ringSize: 4096 });
  const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
  const edges: Array<[BpStateValue, BpStateValue, number]> = [];
  const bp = new BackpressureState(v.i32, v.i64, layout, 0, (from, to, at) => edges.push([from, to, at]));
  bp.reset(0);
  return { bp, edges };
}

interface SimResult {
  bp: BackpressureState;
  end: number;
  predicted: number;
  exhaustions: number;
  /** Free spares and the marks in force at each NORMAL -> PRESSURE and PRESSURE -> NORMAL edge. */
  crossings: Array<{ to: BpStateValue; at: number; free: number; pressureMark: number; recoveryMark: number; predicted: boolean }>;
}

/** A drain that stops `forUs` out of every `everyUs` (a disk stalling now and then). */
interface Stalls {
  everyUs: number;
  forUs: number;
}

/**
 * One writer and a drain that gives each ring back `serviceUs` (x jitter) after its hand-over,
 * (with a throughput) no sooner than `perRingUs(i)` after the previous one, and not during its
 * `stalls`: the writer swaps every `dtUs` (x jitter; `paceAt(i)` scales it from swap i on) while
 * a spare is free, else it exhausts and waits for the next return. Each swap is what
 * writer.takeRing does: onSwap with the service time the drain measured (averaged, weight 1/4),
 * then swapStep. The drain's recovery check runs at each return and at each swap, with the
 * writer's raise, as drain.ts reads it.
 */
function simulate(
  th: Thresholds,
  dtUs: number,
  serviceUs: number,
  swaps: number,
  seed: number,
  perRingUs: (swap: number) => number = () => 0,
  more: { stalls?: Stalls; paceAt?: (swap: number) => number; spares?: number } = {},
): SimResult {
  const jitter = jitterer(seed);
  const { bp, edges } = machine(more.spares);
  const f = new PoolForecast(th);
  const drainMarks = {
    ...th,
    get pressureSpares() {
      return th.pressureSpares + f.raise;
    },
  };
  const st = more.stalls;
  /** A return due at `r` happens after the stall it falls in, if any. */
  const afterStall = (r: number) => {
    if (!st) return r;
    const k = Math.floor(r / st.everyUs);
    return r - k * st.everyUs < st.forUs ? k * st.everyUs + st.forUs : r;
  };
  const submitted: number[] = []; // hand-over times of the rings away, in order
  let measuredServiceUs = 0;
  const returns: number[] = []; // return times of the rings away, in order
  let lastReturn = 0;
  let free = more.spares ?? SPARES;
  let t = 0;
  let predicted = 0;
  let exhaustions = 0;
  const crossings: SimResult['crossings'] = [];
  let seen = edges.length;
  const note = (wasPredicted: boolean) => {
    for (; seen < edges.length; seen++) {
      const [from, to, at] = edges[seen];
      if ((from === NORMAL && to === PRESSURE) || (from === PRESSURE && to === NORMAL)) {
        const { pressureSpares, recoverySpares } = f.marks;
        crossings.push({
          to,
          at,
          free,
          pressureMark: pressureSpares,
          recoveryMark: recoverySpares,
          predicted: wasPredicted && to === PRESSURE,
        });
      }
    }
  };
  const drainUntil = (until: number) => {
    while (returns.length > 0 && returns[0] <= until) {
      const at = returns.shift()!;
      const away = at - submitted.shift()!;
      measuredServiceUs = measuredServiceUs === 0 ? away : measuredServiceUs + (away - measuredServiceUs) / 4;
      free++;
      bp.checkRecovery(spares(free), drainMarks, at);
      note(false);
    }
    bp.checkRecovery(spares(free), drainMarks, until); // the drain's due-time wake-ups
    note(false);
  };
  for (let i = 0; i < swaps; i++) {
    t += dtUs * (more.paceAt?.(i) ?? 1) * jitter();
    drainUntil(t);
    if (free === 0) {
      exhaustions++;
      bp.onExhausted(t);
      note(false);
      t = returns[0];
      drainUntil(t);
    }
    free--;
    lastReturn = afterStall(Math.max(t + serviceUs * jitter(), lastReturn + perRingUs(i)));
    returns.push(lastReturn);
    submitted.push(t);
    f.onSwap(t, free, measuredServiceUs);
    const wasPredicted = swapStep(bp, f, spares(free), free, t);
    if (wasPredicted) predicted++;
    note(wasPredicted);
  }
  return { bp, end: t, predicted, exhaustions, crossings };
}

const timeIn = (r: SimResult, state: BpStateValue) => r.bp.timeInStates(r.end)[state];

describe('swapStep: the state machine under the forecast (simulated drain)', () => {
  it('slow round trips (3.5 swaps) on a drain that keeps up: neither rule ever enters PRESSURE', () => {
    for (const th of [
      BASE,
      { ...BASE, adaptive: true },
      { ...BASE, adaptive: true, horizonUs: 10_000 },
      { ...BASE, horizonUs: 1_000_000 },
    ]) {
      const r = simulate(th, 1_000, 3_500, 5_000, 0);
      assert.deepEqual(r.crossings, [], JSON.stringify(th));
    }
  });

  it('a burst start before any ring came back (3.2 ms round trips, a drain that keeps up): no forecast entry, however long the horizon', () => {
    for (const horizonUs of [10_000, 1_000_000]) {
      const r = simulate({ ...BASE, adaptive: true, horizonUs }, 1_000, 3_200, 3_000, 0);
      assert.deepEqual(r.crossings, [], `horizon ${horizonUs}`);
    }
  });

  // 32 rings (31 spares, marks at 10 and 21): room for a forecast to see a trend before the mark.
  const BIG = { pressureSpares: 10, recoverySpares: 21, stabilityUs: 250_000, horizonUs: 100_000 };

  it('a drain that falls behind the writer: the forecast enters PRESSURE with spares still free, before the mark', () => {
    const th = BIG;
    // 500 swaps with a drain twice as fast as the writer, then one at 80 % of its pace: the
    // spares go at 0.2 a ms; the mark would fire ~95 ms later.
    const r = simulate(th, 1_000, 2_000, 700, 0, (i) => (i < 500 ? 500 : 1_250), { spares: 31 });
    const first = r.crossings.find((c) => c.to === PRESSURE);
    assert.ok(first, 'entered PRESSURE');
    assert.ok(first.predicted, 'by forecast');
    assert.ok(first.free > th.pressureSpares, `with ${first.free} spares free`);
    assert.ok(r.predicted >= 1);
  });

  it('a forecast PRESSURE ends when its hold is over with the spares above the PRESSURE mark, without waiting for the RECOVERY mark', () => {
    const th = BIG;
    // Falls behind (80 % pace) for 70 swaps, then exactly keeps pace: the spares stay where they
    // are (~15), between the marks. The configured machine never enters; the forecast's PRESSURE
    // lapses once the rates show the pace kept.
    const pace = (i: number) => (i < 500 ? 500 : i < 570 ? 1_250 : 1_000);
    const r = simulate(th, 1_000, 2_000, 1_500, 0, pace, { spares: 31 });
    assert.deepEqual(simulate({ ...BIG, horizonUs: 0 }, 1_000, 2_000, 1_500, 0, pace, { spares: 31 }).crossings, []);
    const entry = r.crossings.findIndex((c) => c.to === PRESSURE && c.predicted);
    assert.ok(entry >= 0, JSON.stringify(r.crossings));
    const exit = r.crossings[entry + 1];
    assert.ok(exit && exit.to === NORMAL, 'left PRESSURE');
    assert.ok(exit.free < th.recoverySpares && exit.free > th.pressureSpares, `left with ${exit.free} free`);
    assert.ok(exit.at - r.crossings[entry].at >= th.horizonUs, 'not before one horizon');
    assert.equal(r.bp.state(), NORMAL);
  });

  it('adaptive marks after an overload that exhausts the pool: back in NORMAL no later than the configured machine, plus the lowering', () => {
    // The drain serves at 2/3 of the writer's pace for 300 swaps (the pool runs out), then at
    // twice its pace with 1.5 ms round trips.
    const slowThenFast = (i: number) => (i < 300 ? 1_500 : 500);
    const base = simulate(BASE, 1_000, 1_500, 3_000, 0, slowThenFast);
    const adaptive = simulate({ ...BASE, adaptive: true }, 1_000, 1_500, 3_000, 0, slowThenFast);
    assert.ok(base.exhaustions > 0 && adaptive.exhaustions > 0);
    for (const r of [base, adaptive]) assert.equal(r.bp.state(), NORMAL);
    assert.ok(
      timeIn(adaptive, PRESSURE) + timeIn(adaptive, DROPPING) <= timeIn(base, PRESSURE) + timeIn(base, DROPPING) + 2 * BASE.stabilityUs,
    );
  });

  // The second review's cases: loads the drain sustains on average, with stalls or a step in pace.
  const entries = (x: SimResult) => x.crossings.filter((c) => c.to === PRESSURE).length;
  const pressureMs = (x: SimResult) => Math.round(timeIn(x, PRESSURE) / 1000);
  /** The longest stretch in PRESSURE (ms). */
  const longestMs = (x: SimResult) => {
    let longest = 0;
    let since = NaN;
    for (const c of x.crossings) {
      if (c.to === PRESSURE) since = c.at;
      else if (!Number.isNaN(since)) [longest, since] = [Math.max(longest, c.at - since), NaN];
    }
    if (!Number.isNaN(since)) longest = Math.max(longest, x.end - since);
    return Math.round(longest / 1000);
  };
  const report = (r: SimResult, base: SimResult) =>
    `${entries(r)} entries, ${pressureMs(r)} ms in PRESSURE (longest ${longestMs(r)}) vs ${entries(base)}, ${pressureMs(base)} ms (${longestMs(base)})`;

  it('a drain that stalls 22 ms every 83 ms (12.5 ms swaps, 33 ms round trips): the adaptive mark keeps no thread in PRESSURE', () => {
    // The first version kept this thread in PRESSURE for 19.7 of 20 s. The configured machine
    // already goes in and out with the stalls (87 times); the raised mark is reached in more of
    // them (about twice as many, each as short): earlier warnings, never a stuck thread.
    const stalls = { everyUs: 83_000, forUs: 22_000 };
    const base = simulate(BASE, 12_500, 32_700, 1_600, 5, () => 0, { stalls });
    const r = simulate({ ...BASE, adaptive: true }, 12_500, 32_700, 1_600, 5, () => 0, { stalls });
    assert.equal(r.exhaustions, base.exhaustions);
    assert.ok(longestMs(r) <= 100, report(r, base));
    assert.ok(pressureMs(r) <= 4 * pressureMs(base) + (2 * BASE.stabilityUs) / 1000, report(r, base));
    assert.ok(pressureMs(r) < (r.end / 1000) * 0.25, report(r, base));
  });

  it('a drain that stalls now and then (13 ms every 55 ms; 40 ms every 200 ms): every forecast PRESSURE lapses, and they are few', () => {
    for (const [dtUs, serviceUs, stalls] of [
      [4_600, 4_600, { everyUs: 55_000, forUs: 13_000 }],
      [1_000, 5_000, { everyUs: 200_000, forUs: 40_000 }],
    ] as const) {
      for (const horizonUs of [100_000, 1_000_000]) {
        const base = simulate(BASE, dtUs, serviceUs, 4_000, 9, () => 0, { stalls });
        const r = simulate({ ...BASE, horizonUs }, dtUs, serviceUs, 4_000, 9, () => 0, { stalls });
        const what = `stalls ${stalls.forUs}/${stalls.everyUs}, horizon ${horizonUs}: ${report(r, base)}`;
        // A stall shorter than the horizon can look like the spares running out: each forecast
        // PRESSURE it causes lapses within four horizons (the first version's never did).
        assert.ok(longestMs(r) <= Math.max(longestMs(base), (4 * horizonUs) / 1000 + 20), what);
        assert.ok(pressureMs(r) <= pressureMs(base) + (r.end / 1000) * 0.1, what);
      }
    }
  });

  it('a step up in pace (10 ms swaps, then 1 ms) on a drain that keeps up: nothing forecast while the extra rings come back', () => {
    for (const horizonUs of [100_000, 1_000_000]) {
      const r = simulate({ ...BASE, adaptive: true, horizonUs }, 10_000, 3_500, 3_000, 0, () => 0, { paceAt: (i) => (i < 200 ? 1 : 0.1) });
      assert.deepEqual(r.crossings, [], `horizon ${horizonUs}`);
    }
  });

  it('a forecast PRESSURE lapses within four horizons of its entry, whatever the forecast says', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 10_000 });
    const at = drive(f, 200, 1_000, none);
    f.entered(at.t);
    const first = f.holdUntilUs(at.t, 3);
    assert.equal(first, at.t + 10_000);
    drive(f, 35, 1_000, none, 0, at);
    assert.equal(f.holdUntilUs(at.t, 3), at.t - 35_000 + 40_000, 'capped at the entry + 4 horizons');
    drive(f, 10, 1_000, none, 0, at);
    assert.equal(f.holdUntilUs(at.t, 3), 0, 'no renewal past the cap');
  });

  it('property: jittered loads the drain sustains, with stalls and steps in pace: hysteresis kept at every exit, never held in PRESSURE; steady loads: no more flips than without the forecast', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 3_000 }),
        fc.double({ min: 0.5, max: 5, noNaN: true }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.constantFrom(0, 20_000, 100_000),
        fc.option(fc.record({ every: fc.integer({ min: 5, max: 60 }), share: fc.double({ min: 0.05, max: 0.3, noNaN: true }) })),
        fc.option(fc.record({ at: fc.integer({ min: 100, max: 2_000 }), factor: fc.constantFrom(0.1, 0.5, 2) })),
        (dtUs, ratio, seed, horizonUs, stall, step) => {
          const th = { ...BASE, adaptive: true, horizonUs };
          // Stalls of a share of a period of `every` swaps (the drain still keeps up on average: at
          // most 30 % stalled against a load it returns at once otherwise); a step in pace.
          const more = {
            stalls: stall ? { everyUs: stall.every * dtUs, forUs: stall.share * stall.every * dtUs } : undefined,
            paceAt: step ? (i: number) => (i < step.at ? 1 : step.factor) : undefined,
          };
          // The same load (same seed) with the configured marks only.
          const base = simulate(BASE, dtUs, ratio * dtUs, 3_000, seed, () => 0, more);
          const r = simulate(th, dtUs, ratio * dtUs, 3_000, seed, () => 0, more);
          const what = `${report(r, base)}; ratio ${ratio.toFixed(2)}, stalls ${JSON.stringify(more.stalls)}, step ${JSON.stringify(step)}`;
          if (!stall && !step) {
            // A steady load: at most the one entry while the rates are learnt.
            assert.ok(entries(r) <= entries(base) + 1, what);
            assert.ok(timeIn(r, PRESSURE) <= timeIn(base, PRESSURE) + 4 * horizonUs + 2 * BASE.stabilityUs, what);
          } else {
            // Stalls and steps move the configured machine too; the forecast may warn in more of
            // them (a stall shorter than the horizon looks like the spares running out: 3.4 ms
            // stalls every 20 ms with a 20 ms horizon gave 17 forecast entries, 10 % of the run in
            // PRESSURE, against none), but it never keeps the thread in PRESSURE.
            const allowed = 4 * timeIn(base, PRESSURE) + 4 * horizonUs + 2 * BASE.stabilityUs + 0.25 * r.end;
            assert.ok(timeIn(r, PRESSURE) <= allowed, what);
          }
          // Leaving a mark's PRESSURE needs the spares up to the RECOVERY mark (the band is kept);
          // leaving a forecast's needs them above the PRESSURE mark.
          for (let i = 1; i < r.crossings.length; i++) {
            const [a, b] = [r.crossings[i - 1], r.crossings[i]];
            if (a.to !== PRESSURE || b.to !== NORMAL) continue;
            assert.ok(a.predicted ? b.free > b.pressureMark : b.free >= b.recoveryMark, JSON.stringify([a, b]));
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('forecast PRESSURE and its hold (BackpressureState)', () => {
  it('held until its end whatever the spares; then left above the PRESSURE mark; the drain is told when', () => {
    const { bp } = machine();
    assert.equal(bp.forecastPressure(100, 10_100, true), true);
    assert.equal(bp.state(), PRESSURE);
    assert.equal(bp.heldUntilUs(), 10_100);
    assert.equal(bp.recoveryDueUs(BASE, 200), 10_100, 'the drain wakes at the end of the hold');
    bp.checkRecovery(spares(SPARES), BASE, 10_099);
    assert.equal(bp.state(), PRESSURE, 'held, even with every spare back');
    assert.equal(bp.recoveryDueUs(BASE, 10_100), Infinity, 'a hold that is over is not due again (no busy loop)');
    bp.checkRecovery(spares(BASE.pressureSpares), BASE, 10_100);
    assert.equal(bp.state(), PRESSURE, 'at the PRESSURE mark: stays');
    bp.checkRecovery(spares(BASE.pressureSpares + 1), BASE, 10_100);
    assert.equal(bp.state(), NORMAL, 'above it: left (below the RECOVERY mark)');
  });

  it('the mark firing makes it a mark PRESSURE: hold gone, left only at the RECOVERY mark', () => {
    const { bp } = machine();
    bp.forecastPressure(100, 10_100, true);
    bp.checkPressure(BASE.pressureSpares, BASE, 200);
    assert.equal(bp.heldUntilUs(), 0);
    bp.checkRecovery(spares(BASE.recoverySpares - 1), BASE, 20_000);
    assert.equal(bp.state(), PRESSURE);
    bp.checkRecovery(spares(BASE.recoverySpares), BASE, 20_000);
    assert.equal(bp.state(), NORMAL);
  });

  it('an exhaustion clears the hold; renewing needs a forecast PRESSURE; entering needs NORMAL', () => {
    const { bp } = machine();
    bp.forecastPressure(100, 10_100, true);
    bp.onExhausted(200);
    assert.equal(bp.state(), DROPPING);
    assert.equal(bp.heldUntilUs(), 0);
    assert.equal(bp.forecastPressure(300, 50_000, true), false, 'not from DROPPING');
    assert.equal(bp.heldUntilUs(), 0, 'nor held');
    const m = machine().bp;
    m.checkPressure(0, BASE, 100); // a mark PRESSURE
    assert.equal(m.forecastPressure(200, 50_000, true), false);
    assert.equal(m.heldUntilUs(), 0, 'a mark PRESSURE is not turned into a forecast one');
  });

  it('a renewal between the drain reading the state and deciding voids the decision (restamp)', () => {
    const { bp } = machine();
    bp.forecastPressure(100, 1_000, true);
    // The drain reads the word (PRESSURE, hold ending at 1,000) and counts the spares; meanwhile
    // the writer renews the hold to 50,000. The drain's exchange must fail.
    const renewing: SpareCount = {
      size: () => {
        bp.forecastPressure(1_500, 50_000, false);
        return SPARES;
      },
    };
    bp.checkRecovery(renewing, BASE, 2_000);
    assert.equal(bp.state(), PRESSURE);
    assert.equal(bp.heldUntilUs(), 50_000);
    const t = bp.timeInStates(1_500);
    assert.equal(t[PRESSURE], 1_400, 'the restamp keeps the time in PRESSURE exact');
  });

  it('a raised mark voids a drain decision made on the older mark (restamp), in a forecast PRESSURE only', () => {
    const { bp } = machine();
    bp.forecastPressure(100, 1_000, true);
    const raised = { ...BASE, pressureSpares: BASE.pressureSpares + 1 };
    // The drain reads the word (forecast PRESSURE, hold over at 2,000) and counts 3 spares: above
    // the older mark (2). Meanwhile the writer raises the mark to 3. The drain's exchange must fail.
    const raising: SpareCount = {
      size: () => {
        bp.markRaised(1_500);
        return 3;
      },
    };
    bp.checkRecovery(raising, BASE, 2_000);
    assert.equal(bp.state(), PRESSURE);
    bp.checkRecovery(spares(3), raised, 2_000);
    assert.equal(bp.state(), PRESSURE, 'at the raised mark: stays');
    bp.checkRecovery(spares(4), raised, 2_000);
    assert.equal(bp.state(), NORMAL);
    const m = machine().bp;
    m.checkPressure(0, BASE, 100);
    const word = m.enteredAtUs();
    m.markRaised(5_000);
    assert.equal(m.enteredAtUs(), word, 'a mark PRESSURE is left alone (it is left at the RECOVERY mark, which does not move)');
  });

  it('a real Drain sleeps until the hold ends, not for its idle period, and then lets the thread go', () => {
    const layout = new Layout({ maxThreads: 1, ringsPerThread: SPARES + 1, ringSize: 4096 });
    const v = new SharedViews(new SharedArrayBuffer(layout.totalBytes), layout);
    initControl(v, Date.now(), 0);
    let nowNs = 1e9;
    const c = claimSlot(v, encodeThreadName('t'), 1, 0, nowNs / 1000);
    const w = new Writer({ views: v, thresholds: BASE, clockOffsetMs: 0, flushIntervalMs: 0 }, c.slot, c.registration, 't', 'drop-oldest');
    const sink: TraceSink = { write() {}, close() {} };
    const drain = new Drain(v, sink, {
      batchRings: 8,
      thresholds: BASE,
      dropLogIntervalMs: 1e9,
      dropLogEvery: 1,
      now: () => nowNs,
      log: () => {},
    });
    const bp = new BackpressureState(v.i32, v.i64, layout, c.slot);
    assert.equal(bp.forecastPressure(nowNs / 1000, nowNs / 1000 + 300_000, true), true);
    drain.pass();
    assert.equal(bp.state(), PRESSURE);
    assert.ok(Math.abs(drain.msUntilDue() - 300) < 1, `due in ${drain.msUntilDue()} ms`);
    nowNs += 300e6;
    drain.pass();
    assert.equal(bp.state(), NORMAL, 'every spare is free: the hold was all that kept it');
    w.close();
  });
});
