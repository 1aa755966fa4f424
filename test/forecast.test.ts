/**
 * The writer's pool forecast (src/record/forecast.ts): rates, adaptive marks and predictive
 * entry, alone and driving the real state machine (BackpressureState on shared memory) through
 * swapStep(), the function the writer calls at each swap. A simulated drain returns each ring a
 * service time after its hand-over; the properties check the marks' bounds, that they come down
 * only in NORMAL and slowly, and that neither the marks nor the state flap under jittered load.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BackpressureState, BpState, type BpStateValue, type Thresholds } from '../src/shm/backpressure.js';
import { Layout, SharedViews } from '../src/shm/layout.js';
import { PoolForecast, swapStep } from '../src/record/forecast.js';

const SPARES = 7;
const BASE: Thresholds = { pressureSpares: 2, recoverySpares: 5, stabilityUs: 250_000 };
const { NORMAL, PRESSURE } = BpState;

/** Swaps every `dtUs` with `returned` spares back each time; returns the forecast. */
function steady(f: PoolForecast, swaps: number, dtUs: number, returned: number, serviceUs = 0, start = { t: 0, free: SPARES - 1 }) {
  for (let i = 0; i < swaps; i++) {
    start.t += dtUs;
    start.free = Math.max(0, Math.min(SPARES - 1, start.free - 1 + returned));
    f.onSwap(start.t, start.free, serviceUs, true);
  }
  return start;
}

describe('PoolForecast: rates and time to exhaustion', () => {
  it('a drain that returns a ring per swap: no exhaustion forecast, whatever the pace', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 50_000 }, SPARES);
    steady(f, 500, 1_000, 1);
    assert.ok(Math.abs(f.fillRate - 1 / 1000) < 1e-5, `fill ${f.fillRate}`);
    assert.equal(f.exhaustionUs(4), Infinity);
    assert.equal(f.predictsPressure(4), false);
  });

  it('a drain that returns nothing: exhaustion in free x the swap interval', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 50_000 }, SPARES);
    // 500 swaps 1 ms apart with nothing back (a pool large enough not to run out).
    const at = { t: 0, free: 0 };
    for (let i = 0; i < 500; i++) f.onSwap((at.t += 1_000), 1_000 - i, 0, true);
    assert.ok(Math.abs(f.exhaustionUs(4) - 4_000) < 100, `tte ${f.exhaustionUs(4)}`);
    assert.equal(f.predictsPressure(4), true, '4 ms < 50 ms');
    assert.ok(f.holdUntilUs(at.t, 4) === at.t + 50_000);
  });

  it('no horizon: never predicts, never holds', () => {
    const f = new PoolForecast(BASE, SPARES);
    for (let i = 0; i < 100; i++) f.onSwap(i * 10, 1_000 - i, 0, true);
    assert.ok(f.exhaustionUs(3) < Infinity);
    assert.equal(f.predictsPressure(3), false);
    assert.equal(f.holdUntilUs(1000, 3), 0);
  });

  it('the hold outlasts the entry: it is renewed while exhaustion is forecast within two horizons', () => {
    const f = new PoolForecast({ ...BASE, horizonUs: 10_000 }, SPARES);
    for (let i = 0; i < 200; i++) f.onSwap(i * 1_000, 1_000 - i, 0, true); // ~1 ring/ms net
    // 15 spares' worth is 15 ms away: not an entry (> 10 ms), but a hold (< 20 ms).
    assert.equal(f.predictsPressure(15), false);
    assert.ok(f.holdUntilUs(0, 15) > 0);
    assert.equal(f.holdUntilUs(0, 25), 0);
  });
});

describe('PoolForecast: adaptive marks', () => {
  it('off: the marks stay where they were configured', () => {
    const f = new PoolForecast(BASE, SPARES);
    steady(f, 300, 1_000, 1, 50_000);
    assert.equal(f.raise, 0);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [2, 5]);
  });

  it('rings that take 3 swaps to come back raise the PRESSURE mark to 3 spares, RECOVERY with it', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
    steady(f, 500, 1_000, 1, 3_000);
    assert.equal(f.raise, 1);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [3, 6]);
  });

  it('the raise is bounded: the RECOVERY mark never passes the spare count', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
    steady(f, 500, 1_000, 1, 1_000_000);
    assert.equal(f.maxRaise, 2);
    assert.deepEqual([f.marks.pressureSpares, f.marks.recoverySpares], [4, 7]);
  });

  it('comes down one spare per stability period, and only in NORMAL', () => {
    const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
    const at = steady(f, 500, 1_000, 1, 10_000);
    assert.equal(f.raise, 2);
    // Fast rings again, but the thread is not NORMAL: no change, however long.
    for (let i = 0; i < 1000; i++) f.onSwap((at.t += 1_000), 4, 100, false);
    assert.equal(f.raise, 2);
    // NORMAL: the first step after one stability period, the second after another.
    const from = at.t;
    while (f.raise === 2) f.onSwap((at.t += 1_000), 4, 100, true);
    const firstStep = at.t - from;
    while (f.raise === 1) f.onSwap((at.t += 1_000), 4, 100, true);
    assert.ok(firstStep >= BASE.stabilityUs && firstStep <= BASE.stabilityUs + 2_000, `first step after ${firstStep} µs`);
    assert.ok(at.t - from - firstStep >= BASE.stabilityUs, 'the second step waits a whole period more');
    assert.equal(f.raise, 0);
  });
});

/** A random swap sequence: gaps, the free count seen, the service time, whether NORMAL. */
const swapSeq = fc.array(
  fc.record({
    dtUs: fc.integer({ min: 1, max: 50_000 }),
    free: fc.integer({ min: 0, max: SPARES - 1 }),
    serviceUs: fc.integer({ min: 0, max: 200_000 }),
    normal: fc.boolean(),
  }),
  { minLength: 1, maxLength: 400 },
);

describe('PoolForecast: properties', () => {
  it('whatever the input: marks within bounds, band width kept, lowered only in NORMAL, one spare at a time, a stability period apart', () => {
    fc.assert(
      fc.property(swapSeq, fc.integer({ min: 0, max: 3 }), (seq, p) => {
        const th = { pressureSpares: p, recoverySpares: p + 2, stabilityUs: 20_000, adaptive: true, horizonUs: 10_000 };
        const f = new PoolForecast(th, SPARES);
        let t = 0;
        let lastChange = -Infinity;
        for (const s of seq) {
          const before = f.raise;
          f.onSwap((t += s.dtUs), s.free, s.serviceUs, s.normal);
          assert.ok(f.raise >= 0 && f.raise <= f.maxRaise);
          assert.equal(f.marks.pressureSpares, p + f.raise);
          assert.equal(f.marks.recoverySpares - f.marks.pressureSpares, 2, 'the hysteresis band keeps its width');
          assert.ok(f.marks.recoverySpares <= SPARES);
          if (f.raise < before) {
            assert.ok(s.normal, 'lowered outside NORMAL');
            assert.equal(f.raise, before - 1);
            assert.ok(t - lastChange >= th.stabilityUs, `lowered ${t - lastChange} µs after the last change`);
          }
          if (f.raise !== before) lastChange = t;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a steady load with up to 10 % jitter in pace and service time: the marks only ever rise (no flapping)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 5_000 }),
        fc.double({ min: 0.3, max: 8, noNaN: true }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (dtUs, ratio, seed) => {
          let rng = seed;
          const jitter = () => {
            rng = (Math.imul(rng, 48271) >>> 0) % 2147483647;
            return 0.9 + 0.2 * (rng / 2147483647);
          };
          const f = new PoolForecast({ ...BASE, adaptive: true }, SPARES);
          let t = 0;
          let changes = 0;
          for (let i = 0; i < 2_000; i++) {
            const before = f.raise;
            f.onSwap((t += dtUs * jitter()), 3, ratio * dtUs * jitter(), true);
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
  edges: Array<[BpStateValue, BpStateValue, number]>;
  predicted: number;
  exhaustions: number;
  /** Free spares and the marks in force at each NORMAL -> PRESSURE and PRESSURE -> NORMAL edge. */
  crossings: Array<{ to: BpStateValue; free: number; pressureMark: number; predicted: boolean }>;
}

/**
 * One writer and a drain that gives each ring back `serviceUs` (x jitter) after its hand-over, and
 * (a drain with a throughput) no sooner than `perRingUs(i)` after the previous one: the writer
 * swaps every `dtUs` (x jitter) while a spare is free, else it exhausts and waits for the next
 * return. The drain's recovery check runs at each return with the writer's raise, as drain.ts
 * reads it. Returns the transitions seen.
 */
function simulate(
  th: Thresholds,
  dtUs: number,
  serviceUs: number,
  swaps: number,
  seed: number,
  perRingUs: (swap: number) => number = () => 0,
): SimResult {
  let rng = seed;
  // Up to 10 % either way; seed 0: none.
  const jitter = () => {
    if (seed === 0) return 1;
    rng = (Math.imul(rng, 48271) >>> 0) % 2147483647;
    return 0.9 + 0.2 * (rng / 2147483647);
  };
  const { bp, edges } = machine();
  const f = new PoolForecast(th, SPARES);
  const drainMarks = { ...th };
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
      const [from, to] = edges[seen];
      if ((from === NORMAL && to === PRESSURE) || (from === PRESSURE && to === NORMAL)) {
        crossings.push({ to, free, pressureMark: f.marks.pressureSpares, predicted: wasPredicted && to === PRESSURE });
      }
    }
  };
  const drainUntil = (until: number) => {
    while (returns.length > 0 && returns[0] <= until) {
      const at = returns.shift()!;
      free++;
      drainMarks.pressureSpares = th.pressureSpares + f.raise;
      drainMarks.recoverySpares = th.recoverySpares + f.raise;
      bp.checkRecovery({ size: () => free }, drainMarks, at);
      note(false);
    }
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
    const wasPredicted = swapStep(bp, f, { size: () => free }, free, serviceUs, t);
    if (wasPredicted) predicted++;
    note(wasPredicted);
  }
  return { edges, predicted, exhaustions, crossings };
}

describe('swapStep: the state machine under the forecast (simulated drain)', () => {
  it('a drain fast enough but slow to return: adaptive marks enter PRESSURE once and stay, no exhaustion', () => {
    // 4 rings away after each swap (3.5 ms round trips, one ring a ms): 3 free, never down to
    // the configured mark of 2. The adaptive mark (the rings a round trip takes, rounded up) warns
    // once, as soon as it reaches 3, and for good: it goes on to 4 and RECOVERY to 7.
    const off = simulate(BASE, 1_000, 3_500, 3_000, 0);
    assert.equal(off.crossings.length, 0);
    const on = simulate({ ...BASE, adaptive: true }, 1_000, 3_500, 3_000, 0);
    assert.deepEqual(
      on.crossings.map((c) => [c.to, c.free, c.pressureMark]),
      [[PRESSURE, 3, 3]],
    );
    assert.equal(on.exhaustions, 0);
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

  it('property: jittered steady load, adaptive and predictive on: no more NORMAL <-> PRESSURE flips than without them', () => {
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
          // Every exit needs the spares up to the RECOVERY mark of its entry: the band is kept.
          for (let i = 1; i < r.crossings.length; i++) {
            const [a, b] = [r.crossings[i - 1], r.crossings[i]];
            if (a.to === PRESSURE && b.to === NORMAL) assert.ok(b.free >= a.pressureMark + 1);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
