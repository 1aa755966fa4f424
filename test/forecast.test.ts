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
    const f = new PoolForecast({ ...BASE, horizonUs: 50_000 }, SPARES);
    const at = drive(f, 500, 1_000, keepsUp);
    assert.ok(Math.abs(f.fillRate - 1 / 1000) < 1e-5, `fill ${f.fillRate}`);
    assert.equal(f.exhaustionUs(4), Infinity);
    assert.equal(f.predictsPressure(at.t, 4), false);
    assert.equal(f.holdUntilUs(at.t, 4), 0);
  });

  it('a drain that returns nothing: exhaustion in free x the swap interval, forecast once the window is measured', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 50_000 }, SPARES);
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
    const f = new PoolForecast({ ...BASE, horizonUs: 50_000 }, SPARES);
    const at = drive(f, 500, 1_000, none);
    assert.equal(f.predictsPressure(at.t, 4), true);
    at.t += 1_000_000; // a second of silence
    drive(f, 60, 1_000, none, 0, at);
    assert.equal(f.predictsPressure(at.t, 4), false);
    drive(f, 20, 1_000, none, 0, at);
    assert.equal(f.predictsPressure(at.t, 4), true);
  });

  it('no horizon: never predicts, never holds', () => {
    const f = new PoolForecast(BASE, SPARES);
    const at = drive(f, 500, 10, none);
    assert.ok(f.exhaustionUs(3) < Infinity);
    assert.equal(f.predictsPressure(at.t, 3), false);
    assert.equal(f.holdUntilUs(at.t, 3), 0);
  });

  it('the hold outlasts the entry: held while exhaustion is forecast within two horizons', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 10_000 }, SPARES);
    const at = drive(f, 200, 1_000, none); // 1 ring a ms, none back
    // 15 spares' worth is 15 ms away: not an entry (> 10 ms), but a hold (< 20 ms).
    assert.equal(f.predictsPressure(at.t, 15), false);
    assert.equal(f.holdUntilUs(at.t, 15), at.t + 10_000);
    assert.equal(f.holdUntilUs(at.t, 25), 0);
  });
});

describe('PoolForecast: adaptive marks', () => {
  it('off: the marks stay where they were configured', () => {
    const f = new PoolForecast(BASE, SPARES);
    drive(f, 300, 1_000, none, 50_000);
    assert.equal(f.raise, 0);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [2, 5]);
  });

  it('a drain that keeps up, however slow its round trips: no raise (a sustainable load is not pressure)', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
    drive(f, 1_000, 1_000, keepsUp, 6_000);
    assert.equal(f.depleting(1_000_000), false);
    assert.equal(f.raise, 0);
  });

  it('spares going, rings 3 swaps away: the PRESSURE mark rises to 3 spares, RECOVERY with it', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
    const at = drive(f, 500, 1_000, twoThirds, 3_000);
    assert.equal(f.depleting(at.t), true);
    assert.equal(f.raise, 1);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [3, 6]);
  });

  it('the raise is bounded: the RECOVERY mark never passes the spare count', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
    drive(f, 500, 1_000, none, 1_000_000);
    assert.equal(f.maxRaise, 2);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [4, 7]);
    // recoverySpares already at the spare count: nothing to raise.
    assert.equal(new PoolForecast({ ...BASE, recoverySpares: SPARES, adaptive: true }, SPARES).maxRaise, 0);
  });

  it('comes down one spare per stability period once the spares stop going', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
    const at = drive(f, 500, 1_000, none, 10_000);
    assert.equal(f.raise, 2);
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
  it('whatever the input: marks within bounds, band width kept, lowered one spare at a time, a stability period apart', () => {
    fc.assert(
      fc.property(swapSeq, fc.integer({ min: 0, max: 3 }), (seq, p) => {
        const th = { pressureSpares: p, recoverySpares: p + 2, stabilityUs: 20_000, adaptive: true, horizonUs: 10_000 };
        const f = new PoolForecast(th, SPARES);
        let t = 0;
        let free = 1_000;
        let lastChange = -Infinity;
        for (const s of seq) {
          const before = f.raise;
          free += s.returned - 1;
          f.onSwap((t += s.dtUs), free, s.serviceUs);
          assert.ok(f.raise >= 0 && f.raise <= f.maxRaise);
          assert.equal(f.marks.pressureSpares, p + f.raise);
          assert.equal(f.marks.recoverySpares - f.marks.pressureSpares, 2, 'the hysteresis band keeps its width');
          assert.ok(f.marks.recoverySpares <= SPARES);
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
          const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
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
function machine(): { bp: BackpressureState; edges: Array<[BpStateValue, BpStateValue, number]> } {
  const layout = new Layout({ maxThreads: 1, ringsPerThread: SPARES + 1, ringSize: 4096 });
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

/**
 * One writer and a drain that gives each ring back `serviceUs` (x jitter) after its hand-over, and
 * (a drain with a throughput) no sooner than `perRingUs(i)` after the previous one: the writer
 * swaps every `dtUs` (x jitter) while a spare is free, else it exhausts and waits for the next
 * return. Each swap is what writer.takeRing does: onSwap, then swapStep. The drain's recovery
 * check runs at each return with the writer's raise, as drain.ts reads it.
 */
function simulate(
  th: Thresholds,
  dtUs: number,
  serviceUs: number,
  swaps: number,
  seed: number,
  perRingUs: (swap: number) => number = () => 0,
): SimResult {
  const jitter = jitterer(seed);
  const { bp, edges } = machine();
  const f = new PoolForecast(th, SPARES);
  const drainMarks = {
    ...th,
    get pressureSpares() {
      return th.pressureSpares + f.raise;
    },
    get recoverySpares() {
      return th.recoverySpares + f.raise;
    },
  };
  const returns: number[] = []; // return times of the rings away, in order
  let lastReturn = 0;
  let free = SPARES;
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
      free++;
      bp.checkRecovery(spares(free), drainMarks, at);
      note(false);
    }
    bp.checkRecovery(spares(free), drainMarks, until); // the drain's due-time wake-ups
    note(false);
  };
  for (let i = 0; i < swaps; i++) {
    t += dtUs * jitter();
    drainUntil(t);
    if (free === 0) {
      exhaustions++;
      bp.onExhausted(t);
      note(false);
      t = returns[0];
      drainUntil(t);
    }
    free--;
    lastReturn = Math.max(t + serviceUs * jitter(), lastReturn + perRingUs(i));
    returns.push(lastReturn);
    f.onSwap(t, free, serviceUs);
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

  it('a drain that falls behind the writer: the forecast enters PRESSURE with spares still free, before the mark', () => {
    const th = { ...BASE, horizonUs: 100_000 };
    // 500 swaps with a drain twice as fast as the writer, then one at 90 % of its pace: 5 spares
    // last 50 ms, within the horizon.
    const r = simulate(th, 1_000, 2_000, 700, 0, (i) => (i < 500 ? 500 : 1_111));
    const first = r.crossings.find((c) => c.to === PRESSURE);
    assert.ok(first, 'entered PRESSURE');
    assert.ok(first.predicted, 'by forecast');
    assert.ok(first.free > th.pressureSpares, `with ${first.free} spares free`);
    assert.ok(r.predicted >= 1);
  });

  it('a forecast PRESSURE ends when its hold is over with the spares above the PRESSURE mark, without waiting for the RECOVERY mark', () => {
    const th = { ...BASE, horizonUs: 100_000 };
    // Falls behind (90 % pace) for 15 swaps, then exactly keeps pace: the spares stay where they
    // are (3), between the marks. The configured machine never enters; the forecast's PRESSURE
    // lapses once the rates show the pace kept.
    const r = simulate(th, 1_000, 2_000, 1_500, 0, (i) => (i < 500 ? 500 : i < 515 ? 1_111 : 1_000));
    assert.deepEqual(simulate(BASE, 1_000, 2_000, 1_500, 0, (i) => (i < 500 ? 500 : i < 515 ? 1_111 : 1_000)).crossings, []);
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

  it('property: jittered loads the drain sustains: no more NORMAL <-> PRESSURE flips, and not much longer in PRESSURE, than without the forecast', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 3_000 }),
        fc.double({ min: 0.5, max: 5, noNaN: true }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.constantFrom(0, 20_000, 100_000),
        (dtUs, ratio, seed, horizonUs) => {
          const th = { ...BASE, adaptive: true, horizonUs };
          // The same load (same seed) with the configured marks only.
          const base = simulate(BASE, dtUs, ratio * dtUs, 3_000, seed);
          const r = simulate(th, dtUs, ratio * dtUs, 3_000, seed);
          const entries = (x: SimResult) => x.crossings.filter((c) => c.to === PRESSURE).length;
          assert.ok(
            entries(r) <= entries(base) + 1,
            `${entries(r)} entries into PRESSURE vs ${entries(base)} (ratio ${ratio.toFixed(2)}): ${JSON.stringify(r.crossings.slice(0, 6))}`,
          );
          const bound = timeIn(base, PRESSURE) + 2 * horizonUs + 2 * BASE.stabilityUs;
          assert.ok(timeIn(r, PRESSURE) <= bound, `${timeIn(r, PRESSURE)} µs in PRESSURE vs ${timeIn(base, PRESSURE)}`);
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
